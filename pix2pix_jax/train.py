"""Pix2Pix training: one state pytree, a jit'd data-parallel step, and the loop around it."""

import functools
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers

from pix2pix_jax import (
  checkpoint,
  color,
  config_validation,
  evaluate,
  input_pipeline,
  losses,
  models,
  parallel,
  visualize,
  xla_flags,
)


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


def num_train_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  if config.num_train_steps > 0:
    return config.num_train_steps
  return (config.num_epochs + config.num_epochs_decay) * steps_per_epoch


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
  )


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


def train_step(
  state: TrainState, batch: dict[str, jax.Array], base_key: jax.Array, *, nets: Networks
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Pix2Pix update, as the reference: D on (real, detached fake), then G through the new D.

  The generator runs forward once; its gradient comes from the vjp of that forward pass.
  """
  images = color.uint8_to_float(batch["image"])
  inputs = color.model_input(images, nets.color_space)
  targets = color.model_target(images, nets.color_space)
  dropout_key = jax.random.fold_in(base_key, state.step)

  def generate(g_params):
    fake, updates = nets.generator.apply(
      {"params": g_params, "batch_stats": state.g_batch_stats},
      inputs,
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
    "g_grad_norm": optax.global_norm(g_grads),
    "d_grad_norm": optax.global_norm(d_grads),
    "g_param_norm": optax.global_norm(g_params),
    "d_param_norm": optax.global_norm(d_params),
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
  )


def predict_rgb(nets: Networks, g_variables: dict[str, Any], images: jax.Array) -> jax.Array:
  """uint8 RGB batch -> the generator's colourisation of its luminance, sRGB in [0, 1]."""
  inputs = color.model_input(color.uint8_to_float(images), nets.color_space)
  outputs = nets.generator.apply(g_variables, inputs, train=False)
  return color.to_rgb(inputs, outputs, nets.color_space)


class NonFiniteError(FloatingPointError):
  """A loss, gradient or parameter norm became NaN or Inf."""


def check_finite(history: list[tuple[int, dict[str, Any]]]) -> None:
  """Raises NonFiniteError naming the first step and term that is not finite."""
  for step, metrics in history:
    for name, value in metrics.items():
      if not np.isfinite(value):
        raise NonFiniteError(
          f"non-finite {name}={float(value)} at step {step}; stopping without saving this state "
          "(the last good checkpoint is kept)"
        )


class Preemption:
  """Turns SIGTERM/SIGINT into a flag the loop checks, so it can checkpoint and exit cleanly."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    logging.warning("received signal %d: saving a checkpoint and stopping", signum)
    self.requested = True

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def agreed(self) -> bool:
    """Whether any process was asked to stop (a collective: every process must call it)."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.array(self.requested))
    return bool(np.any(flags))


def format_progress(
  step: int, total: int, steps_per_sec: float, batch_size: int, scalars: dict
) -> str:
  """One console line: position, throughput, time left and the main loss terms."""
  remaining = (total - step) / max(steps_per_sec, 1e-9)
  eta = time.strftime("%H:%M:%S", time.gmtime(remaining)) if np.isfinite(remaining) else "?"
  terms = " ".join(f"{k}={scalars[k]:.4g}" for k in ("d_loss", "g_gan", "g_l1") if k in scalars)
  return (
    f"step {step}/{total} ({100 * step / total:.1f}%) | {steps_per_sec * batch_size:.2f} img/s"
    f" | ETA {eta} | {terms}"
  )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains (resuming from `workdir` if it holds a checkpoint), logs, samples, evaluates."""
  config_validation.validate(config)
  parallel.local_batch_size(config.batch_size)  # fails early on an indivisible batch
  mesh = parallel.make_mesh()
  replicated = parallel.replicated(mesh)
  is_chief = jax.process_index() == 0

  steps_per_epoch = input_pipeline.steps_per_epoch(config)
  total_steps = num_train_steps(config, steps_per_epoch)
  nets = make_networks(config, steps_per_epoch)
  init_key, base_key = jax.random.split(jax.random.key(config.seed))

  init_fn = jax.jit(
    functools.partial(init_state, nets, image_size=config.data.crop_size),
    out_shardings=replicated,
  )
  manager = checkpoint.create_manager(workdir, config, best_metric=config.get("best_metric"))
  latest = manager.latest_step()
  if latest is not None:
    checkpoint.check_compatible(checkpoint.read_config(manager, latest), config)
    abstract = jax.eval_shape(init_fn, jax.random.key(0))
    abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract
    )
    state = checkpoint.restore_state(manager, latest, abstract)
    logging.info("resumed from step %d in %s", latest, workdir)
  else:
    state = init_fn(init_key)
    logging.info(
      "generator %s params, discriminator %s params",
      f"{models.count_params(state.g_params):,}",
      f"{models.count_params(state.d_params):,}",
    )
  start_step = int(state.step)
  if start_step >= total_steps:
    logging.warning(
      "the checkpoint in %s is at step %d, past num_train_steps=%d: nothing to train",
      workdir,
      start_step,
      total_steps,
    )

  step_fn = compile_step(nets, mesh)
  predict_fn = jax.jit(
    functools.partial(predict_rgb, nets), compiler_options=xla_flags.forward_compiler_options()
  )

  writer = metric_writers.create_default_writer(workdir, just_logging=not is_chief)
  if start_step == 0:
    writer.write_hparams(_flatten(config.to_dict()))
  has_eval = _has_eval_data(config)
  sample_images = _sample_images(config) if has_eval else None
  train_iter = input_pipeline.create_train_iterator(config, start_step=start_step)

  history: list[tuple[int, dict[str, Any]]] = []
  last_log = (time.time(), start_step)
  stop = False
  with Preemption() as preemption:
    for step in range(start_step + 1, total_steps + 1):
      batch = parallel.to_global(next(train_iter), mesh)
      state, metrics = step_fn(state, batch, base_key)
      history.append((step, metrics))

      is_last = step == total_steps
      # With several processes the stop flag is a collective, so only ask at log steps.
      if jax.process_count() == 1 or step % config.log_every_steps == 0:
        stop = preemption.agreed()
      if step % config.log_every_steps == 0 or is_last or stop:
        history = jax.device_get(history)
        check_finite(history)
        now = time.time()
        steps_per_sec = (step - last_log[1]) / max(now - last_log[0], 1e-9)
        scalars = {k: float(np.mean([m[k] for _, m in history])) for k in history[-1][1]}
        scalars["images_per_sec"] = steps_per_sec * config.batch_size
        writer.write_scalars(step, scalars)
        if is_chief:
          logging.info(
            format_progress(step, total_steps, steps_per_sec, config.batch_size, scalars)
          )
        history, last_log = [], (now, step)

      if sample_images is not None and (step % config.sample_every_steps == 0 or is_last):
        _write_samples(predict_fn, state, sample_images, workdir, writer, step, is_chief)

      eval_metrics = None
      if has_eval and (step % config.eval_every_steps == 0 or is_last):
        eval_metrics = evaluate.evaluate_batches(
          functools.partial(predict_fn, state.generator_variables),
          input_pipeline.create_eval_iterator(config),
          mesh,
        )
        writer.write_scalars(step, {f"eval/{k}": v for k, v in eval_metrics.items()})

      if step % config.checkpoint_every_steps == 0 or is_last or stop or eval_metrics:
        # Never save a state whose step metrics have not been checked.
        history = jax.device_get(history)
        check_finite(history)
        checkpoint.save(manager, step, state, config, force=True, metrics=eval_metrics)
      if stop:
        logging.warning("stopped at step %d on request; rerun the same command to resume", step)
        break

  manager.wait_until_finished()
  manager.close()
  writer.flush()
  return state


def _has_eval_data(config: ml_collections.ConfigDict) -> bool:
  """Whether the eval split has any example; training goes on without one (with a warning)."""
  try:
    next(iter(input_pipeline.create_eval_iterator(config)))
  except (ValueError, StopIteration) as e:
    logging.warning("no evaluation data, so no evaluation or sample grids: %s", e)
    return False
  return True


def _sample_images(config: ml_collections.ConfigDict) -> np.ndarray | None:
  """A fixed set of eval images (uint8) for the sample grids, the same at every step."""
  if config.num_sample_images <= 0:
    return None
  images = []
  for batch in input_pipeline.create_eval_iterator(config):
    images.extend(batch["image"][batch["mask"]])
    if len(images) >= config.num_sample_images:
      break
  return np.stack(images[: config.num_sample_images]) if images else None


def _write_samples(predict_fn, state, images, workdir, writer, step, is_chief) -> None:
  generated = color.float_to_uint8(np.asarray(predict_fn(state.generator_variables, images)))
  gray = color.float_to_uint8(np.asarray(color.rgb_to_gray(color.uint8_to_float(images))))
  grid = visualize.sample_grid(np.asarray(gray), np.asarray(generated), images)
  if is_chief:
    visualize.save_png(grid, os.path.join(workdir, "samples", f"step_{step:07d}.png"))
  writer.write_images(step, {"samples": grid[None]})


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{name}."))
    else:
      flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
  return flat
