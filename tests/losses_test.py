"""Tests for pix2pix_jax.losses against NumPy transcriptions of the loss formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pix_jax import losses


def _bce_ref(logits: np.ndarray, label: float) -> float:
  # -[y log s(x) + (1 - y) log(1 - s(x))], with -log s(x) = log(1 + e^-x) written stably.
  x = logits.astype(np.float64)
  return float(np.mean(label * np.logaddexp(0, -x) + (1 - label) * np.logaddexp(0, x)))


def _d_ref(real: np.ndarray, fake: np.ndarray, gan: str) -> float:
  real, fake = real.astype(np.float64), fake.astype(np.float64)
  if gan == "vanilla":
    return 0.5 * (_bce_ref(real, 1.0) + _bce_ref(fake, 0.0))
  if gan == "lsgan":
    return 0.5 * (np.mean((real - 1) ** 2) + np.mean(fake**2))
  return 0.5 * (np.mean(np.maximum(0, 1 - real)) + np.mean(np.maximum(0, 1 + fake)))


def _g_ref(fake: np.ndarray, gan: str) -> float:
  fake = fake.astype(np.float64)
  if gan == "vanilla":
    return _bce_ref(fake, 1.0)
  if gan == "lsgan":
    return float(np.mean((fake - 1) ** 2))
  return float(-np.mean(fake))


def _logits(seed: int, scale: float = 2.0) -> np.ndarray:
  # PatchGAN-shaped logits: [N, 30, 30, 1].
  return (np.random.default_rng(seed).normal(size=(3, 30, 30, 1)) * scale).astype(np.float32)


@pytest.mark.parametrize("gan", losses.GAN_LOSSES)
def test_losses_match_reference(gan):
  real, fake = _logits(0) + 1.0, _logits(1) - 1.0
  d = losses.discriminator_loss(real, fake, gan)
  g = losses.generator_gan_loss(fake, gan)
  assert d.shape == () and g.shape == () and d.dtype == jnp.float32
  np.testing.assert_allclose(d, _d_ref(real, fake, gan), rtol=1e-5)
  np.testing.assert_allclose(g, _g_ref(fake, gan), rtol=1e-5)


@pytest.mark.parametrize("gan", losses.GAN_LOSSES)
def test_large_logits_are_finite_and_correct(gan):
  big = np.array([-1e4, -100.0, -30.0, 30.0, 100.0, 1e4], np.float32)
  for real, fake in ((big, big[::-1]), (np.full(6, 1e4, np.float32), np.full(6, -1e4, np.float32))):
    d = losses.discriminator_loss(real, fake, gan)
    g = losses.generator_gan_loss(fake, gan)
    np.testing.assert_allclose(d, _d_ref(real, fake, gan), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g, _g_ref(fake, gan), rtol=1e-5, atol=1e-6)
    grads = jax.grad(lambda r, f: losses.discriminator_loss(r, f, gan), argnums=(0, 1))(real, fake)
    grads += (jax.grad(lambda f: losses.generator_gan_loss(f, gan))(fake),)
    assert all(np.isfinite(np.asarray(x)).all() for x in grads)


def test_vanilla_values_at_known_points():
  zeros = np.zeros((2, 4, 4, 1), np.float32)
  # An undecided discriminator: BCE = log 2 for either label.
  np.testing.assert_allclose(
    losses.discriminator_loss(zeros, zeros, "vanilla"), np.log(2), rtol=1e-6
  )
  np.testing.assert_allclose(losses.generator_gan_loss(zeros, "vanilla"), np.log(2), rtol=1e-6)
  # A confidently wrong discriminator pays the logit magnitude.
  big = np.full((1, 2, 2, 1), 1e4, np.float32)
  np.testing.assert_allclose(losses.discriminator_loss(-big, big, "vanilla"), 1e4, rtol=1e-6)


def test_generator_gradient_direction():
  # Every loss should push fake logits up (towards "real") for the generator.
  fake = _logits(2)
  for gan in losses.GAN_LOSSES:
    grad = np.asarray(jax.grad(losses.generator_gan_loss)(fake, gan))
    assert (grad[fake < 0.9] < 0).all(), gan


def test_unknown_gan_name():
  x = np.zeros((1, 2, 2, 1), np.float32)
  with pytest.raises(ValueError, match="wgan"):
    losses.discriminator_loss(x, x, "wgan")
  with pytest.raises(ValueError, match="wgan"):
    losses.generator_gan_loss(x, "wgan")


def test_l1_loss():
  rng = np.random.default_rng(3)
  pred, target = rng.normal(size=(2, 8, 8, 3)), rng.normal(size=(2, 8, 8, 3))
  np.testing.assert_allclose(
    losses.l1_loss(pred, target), np.mean(np.abs(pred - target)), rtol=1e-6
  )
  assert float(losses.l1_loss(pred, pred)) == 0.0
  assert losses.l1_loss(jnp.asarray(pred, jnp.bfloat16), target).dtype == jnp.float32
