"""GAN losses (vanilla, lsgan, hinge) and the L1 reconstruction loss, each a float32 mean over
every element (for a PatchGAN, the batch and all patches). The discriminator loss is halved, as
in the Pix2Pix reference, so that D learns at half the rate of G.
"""

import jax
import jax.numpy as jnp
import optax

GAN_LOSSES = ("vanilla", "lsgan", "hinge")


def _check(gan: str) -> None:
  if gan not in GAN_LOSSES:
    raise ValueError(f"Unknown GAN loss {gan!r}; expected one of {GAN_LOSSES}.")


def _f32(x: jax.Array) -> jax.Array:
  return jnp.asarray(x, jnp.float32)


def _bce(logits: jax.Array, label: float) -> jax.Array:
  """Mean binary cross-entropy with logits against a constant label; stable for any logit."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, gan: str) -> jax.Array:
  """0.5 * (loss(D(real), real) + loss(D(fake), fake)).

  vanilla: binary cross-entropy with logits, labels 1 / 0.
  lsgan: mean squared error to 1 / 0.
  hinge: mean relu(1 - real) and mean relu(1 + fake).
  """
  _check(gan)
  real, fake = _f32(real_logits), _f32(fake_logits)
  if gan == "vanilla":
    real_term, fake_term = _bce(real, 1.0), _bce(fake, 0.0)
  elif gan == "lsgan":
    real_term, fake_term = jnp.mean((real - 1.0) ** 2), jnp.mean(fake**2)
  else:
    real_term, fake_term = jnp.mean(jax.nn.relu(1.0 - real)), jnp.mean(jax.nn.relu(1.0 + fake))
  return 0.5 * (real_term + fake_term)


def generator_gan_loss(fake_logits: jax.Array, gan: str) -> jax.Array:
  """The generator's adversarial loss: make D call the fakes real.

  vanilla: BCE(D(fake), 1) (the non-saturating loss); lsgan: mean (D(fake) - 1)^2;
  hinge: -mean D(fake).
  """
  _check(gan)
  fake = _f32(fake_logits)
  if gan == "vanilla":
    return _bce(fake, 1.0)
  if gan == "lsgan":
    return jnp.mean((fake - 1.0) ** 2)
  return -jnp.mean(fake)


def l1_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error over all elements."""
  return jnp.mean(jnp.abs(_f32(pred) - _f32(target)))
