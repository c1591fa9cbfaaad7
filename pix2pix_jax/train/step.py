"""The train state, the networks and optimisers around it, and the jit'd Pix2Pix update step.

Imports only jax, flax, optax and ml_collections (no input pipeline), so that the step runs
wherever the model does.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from pix2pix_jax import color, config_lib, hints, losses, models, parallel, xla_flags
from pix2pix_jax.hints import device as hint_ops

# Simulated hints draw from their own stream: fold_in(fold_in(base key, this), step).
HINT_STREAM = 0x68696E74


@flax.struct.dataclass
class TrainState:
  """Everything training changes: both networks, their BatchNorm statistics and optimisers."""

  step: jax.Array
  g_params: Any
  g_batch_stats: Any
  g_opt_state: Any
  d_params: Any
  d_batch_stats: Any
  d_opt_state: Any

  @property
  def generator_variables(self) -> dict[str, Any]:
    return {"params": self.g_params, "batch_stats": self.g_batch_stats}


@flax.struct.dataclass
class Networks:
  """The static half of training: modules, optimisers and loss settings (not saved)."""

  generator: nn.Module = flax.struct.field(pytree_node=False)
  discriminator: nn.Module = flax.struct.field(pytree_node=False)
  g_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  d_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  learning_rate: Callable[[jax.Array], jax.Array] = flax.struct.field(pytree_node=False)
  color_space: str = flax.struct.field(pytree_node=False)
  gan: str = flax.struct.field(pytree_node=False)
  l1_weight: float = flax.struct.field(pytree_node=False)
  # Simulated hints' settings (hint_ops.simulate's keywords) for a hint generator, else None.
  hint_sim: tuple[tuple[str, Any], ...] | None = flax.struct.field(pytree_node=False, default=None)


def learning_rate_schedule(
  config: ml_collections.ConfigDict, steps_per_epoch: int
) -> Callable[[jax.Array], jax.Array]:
  """Constant for `num_epochs`, then linear decay to 0 over `num_epochs_decay` (as the paper)."""
  constant_steps = config.num_epochs * steps_per_epoch
  decay_steps = max(config.num_epochs_decay * steps_per_epoch, 1)
  base = config.optim.learning_rate

  def schedule(step):
    frac = jnp.clip((step - constant_steps) / decay_steps, 0.0, 1.0)
    return base * (1.0 - frac)

  return schedule


def schedule_end_step(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """The step at which `learning_rate_schedule` reaches 0."""
  return (config.num_epochs + config.num_epochs_decay) * steps_per_epoch


def num_train_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """`config.num_train_steps`, or (when -1) the end of the learning-rate schedule."""
  if config.num_train_steps > 0:
    return config.num_train_steps
  return schedule_end_step(config, steps_per_epoch)


def make_networks(config: ml_collections.ConfigDict, steps_per_epoch: int) -> Networks:
  lr = learning_rate_schedule(config, steps_per_epoch)

  def adam():
    return optax.adam(lr, b1=config.optim.b1, b2=config.optim.b2)

  return Networks(
    generator=models.make_generator(config),
    discriminator=models.make_discriminator(config),
    g_tx=adam(),
    d_tx=adam(),
    learning_rate=lr,
    color_space=config.color_space,
    gan=config.loss.gan,
    l1_weight=float(config.loss.l1_weight),
    hint_sim=_hint_sim(config),
  )


def _hint_sim(config: ml_collections.ConfigDict) -> tuple[tuple[str, Any], ...] | None:
  if not hints.enabled(config):
    return None
  sim = config.hint_sim
  problems = []
  if not 0 < sim.points_p <= 1:
    problems.append(f"config.hint_sim.points_p={sim.points_p} must be in (0, 1]")
  if sim.max_points < 1:
    problems.append(f"config.hint_sim.max_points={sim.max_points} must be >= 1")
  if sim.max_patch < 1 or sim.max_patch % 2 == 0:
    problems.append(f"config.hint_sim.max_patch={sim.max_patch} must be an odd number >= 1")
  # A workdir written before chroma_scale_p existed has none: 0.
  chroma_scale_p = float(sim.get("chroma_scale_p", 0.0))
  for field, p in (("hue_rotation_p", sim.hue_rotation_p), ("chroma_scale_p", chroma_scale_p)):
    if not 0 <= p <= 1:
      problems.append(f"config.hint_sim.{field}={p} must be in [0, 1]")
  if problems:
    raise config_lib.ConfigError("; ".join(problems))
  return (
    ("points_p", float(sim.points_p)),
    ("max_points", int(sim.max_points)),
    ("max_patch", int(sim.max_patch)),
    ("hue_rotation_p", float(sim.hue_rotation_p)),
    ("chroma_scale_p", chroma_scale_p),
  )


def simulated_hints(
  nets: Networks, images: jax.Array, base_key: jax.Array, step: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """What training gives a hint generator at `step` for sRGB images [B,H,W,3] in [0, 1]: the
  images (their colours turned by `hint_ops.rotate_hue` and dulled by `hint_ops.scale_chroma`
  where the config asks) and the hint channels simulated from them. A pure function of (base
  key, step, images), so resume stays exact."""
  sim = dict(nets.hint_sim)
  key = jax.random.fold_in(jax.random.fold_in(base_key, HINT_STREAM), step)
  hue_key, hint_key = jax.random.split(key)
  images = hint_ops.rotate_hue(hue_key, images, sim.pop("hue_rotation_p"))
  images = hint_ops.scale_chroma(jax.random.fold_in(hue_key, 1), images, sim.pop("chroma_scale_p"))
  true_ab = color.rgb_to_lab(images)[..., 1:]
  return images, hint_ops.encode(*hint_ops.simulate(hint_key, true_ab, **sim))


def init_state(nets: Networks, key: jax.Array, image_size: int) -> TrainState:
  """Fresh parameters for a square `image_size` input (pure; jit it with output shardings)."""
  g_key, d_key = jax.random.split(key)
  gray = jnp.zeros((1, image_size, image_size, 1), jnp.float32)
  pair = jnp.zeros((1, image_size, image_size, 1 + color.num_output_channels(nets.color_space)))
  g_vars = nets.generator.init(g_key, gray, train=False)
  d_vars = nets.discriminator.init(d_key, pair, train=False)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    g_params=g_vars["params"],
    g_batch_stats=g_vars.get("batch_stats", {}),
    g_opt_state=nets.g_tx.init(g_vars["params"]),
    d_params=d_vars["params"],
    d_batch_stats=d_vars.get("batch_stats", {}),
    d_opt_state=nets.d_tx.init(d_vars["params"]),
  )


def _model_io(
  nets: Networks, batch: dict[str, jax.Array], base_key: jax.Array, step: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(the discriminator's condition: L alone; the generator's input: L, and with hints the
  simulated hint channels; the target) of a uint8 batch."""
  images = color.uint8_to_float(batch["image"])
  hint_channels = None
  if nets.hint_sim is not None:
    images, hint_channels = simulated_hints(nets, images, base_key, step)
  inputs = color.model_input(images, nets.color_space)
  targets = color.model_target(images, nets.color_space)
  g_inputs = inputs
  if hint_channels is not None:
    g_inputs = jnp.concatenate([inputs, hint_channels], axis=-1)
  return inputs, g_inputs, targets


def train_step(
  state: TrainState, batch: dict[str, jax.Array], base_key: jax.Array, *, nets: Networks
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Pix2Pix update, as the reference: D on (real, detached fake), then G through the new D.

  The generator runs forward once; its gradient comes from the vjp of that forward pass.
  """
  inputs, g_inputs, targets = _model_io(nets, batch, base_key, state.step)
  dropout_key = jax.random.fold_in(base_key, state.step)

  def generate(g_params):
    fake, updates = nets.generator.apply(
      {"params": g_params, "batch_stats": state.g_batch_stats},
      g_inputs,
      train=True,
      rngs={"dropout": dropout_key},
      mutable=["batch_stats"],
    )
    return fake, updates.get("batch_stats", {})

  fake, g_vjp, g_batch_stats = jax.vjp(generate, state.g_params, has_aux=True)

  def discriminate(d_params, batch_stats, image):
    logits, updates = nets.discriminator.apply(
      {"params": d_params, "batch_stats": batch_stats},
      jnp.concatenate([inputs, image], axis=-1),
      train=True,
      mutable=["batch_stats"],
    )
    return logits, updates.get("batch_stats", {})

  def d_loss_fn(d_params):
    fake_logits, stats = discriminate(d_params, state.d_batch_stats, jax.lax.stop_gradient(fake))
    real_logits, stats = discriminate(d_params, stats, targets)
    loss = losses.discriminator_loss(real_logits, fake_logits, nets.gan)
    return loss, (stats, real_logits, fake_logits)

  (d_loss, (d_batch_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
    d_loss_fn, has_aux=True
  )(state.d_params)
  d_updates, d_opt_state = nets.d_tx.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(fake):
    logits, stats = discriminate(d_params, d_batch_stats, fake)
    gan_loss = losses.generator_gan_loss(logits, nets.gan)
    l1 = losses.l1_loss(fake, targets)
    return gan_loss + nets.l1_weight * l1, (stats, gan_loss, l1)

  (g_loss, (d_batch_stats, g_gan, g_l1)), d_fake = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = g_vjp(d_fake)
  g_updates, g_opt_state = nets.g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  new_state = TrainState(
    step=state.step + 1,
    g_params=g_params,
    g_batch_stats=g_batch_stats,
    g_opt_state=g_opt_state,
    d_params=d_params,
    d_batch_stats=d_batch_stats,
    d_opt_state=d_opt_state,
  )
  metrics = {
    "d_loss": d_loss,
    "g_loss": g_loss,
    "g_gan": g_gan,
    "g_l1": g_l1,
    "d_real_logits": jnp.mean(real_logits),
    "d_fake_logits": jnp.mean(fake_logits),
    "g_grad_norm": optax.tree.norm(g_grads),
    "d_grad_norm": optax.tree.norm(d_grads),
    "g_param_norm": optax.tree.norm(g_params),
    "d_param_norm": optax.tree.norm(d_params),
    "learning_rate": nets.learning_rate(state.step),
  }
  return new_state, metrics


def compile_step(nets: Networks, mesh: jax.sharding.Mesh):
  """`train_step` jit'd once for `mesh`: state replicated and donated, batch sharded."""
  replicated = parallel.replicated(mesh)
  return jax.jit(
    functools.partial(train_step, nets=nets),
    in_shardings=(replicated, parallel.batch_sharding(mesh), replicated),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
    compiler_options=xla_flags.train_compiler_options(),
  )
