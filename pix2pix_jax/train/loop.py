"""The training loop: input pipeline, the jit'd step, logging, sample grids, evaluation and
checkpoints, with exact resume and clean stops on SIGTERM/SIGINT."""

import contextlib
import functools
import logging
import os
import signal
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from clu import metric_writers

from pix2pix_jax import (
  checkpoint,
  color,
  config_lib,
  errors,
  input_pipeline,
  models,
  parallel,
  xla_flags,
)
from pix2pix_jax.evaluate import common, evaluator
from pix2pix_jax.train import sample_grid, workdir_lock
from pix2pix_jax.train import step as train_step

log = logging.getLogger(__name__)

# config.profile_steps: the trace starts after this many steps of a run (compilation included).
PROFILE_WARMUP_STEPS = 3


class WorkdirError(errors.UserError, OSError):
  """The workdir cannot be written (not a folder, no permission, disk full)."""


class NonFiniteError(errors.UserError, FloatingPointError):
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
    log.warning("received signal %d: saving a checkpoint and stopping", signum)
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


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, workdir_held: bool = False
) -> train_step.TrainState:
  """Trains (resuming from `workdir` if it holds a checkpoint), logs, samples, evaluates.
  `workdir_held`: the caller holds `workdir_lock.hold(workdir)` already (pix2pix-train)."""
  config_lib.validate(config)
  parallel.local_batch_size(config.batch_size)  # fails early on an indivisible batch
  try:
    # One run per workdir: a second one refuses at once, naming the owner.
    with contextlib.nullcontext() if workdir_held else workdir_lock.hold(workdir):
      return _train_and_evaluate(config, workdir)
  except OSError as e:
    if isinstance(e, errors.UserError):
      raise
    where = f" ({e.filename})" if e.filename else ""
    raise WorkdirError(f"{workdir}: {e.strerror or e}{where}") from e


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_step.TrainState:
  mesh = parallel.make_mesh()
  replicated = parallel.replicated(mesh)
  is_chief = jax.process_index() == 0

  steps_per_epoch = input_pipeline.steps_per_epoch(config)
  total_steps = train_step.num_train_steps(config, steps_per_epoch)
  nets = train_step.make_networks(config, steps_per_epoch)
  init_key, base_key = jax.random.split(jax.random.key(config.seed))

  init_fn = jax.jit(
    functools.partial(train_step.init_state, nets, image_size=config.data.crop_size),
    out_shardings=replicated,
  )
  manager = checkpoint.create_manager(workdir, config, best_metric=config.get("best_metric"))
  abstract = jax.eval_shape(init_fn, jax.random.key(0))
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract
  )
  # The newest checkpoint that restores; corrupt newer ones are moved to checkpoints/corrupt/.
  restored = checkpoint.restore_training(manager, config, abstract)
  if restored is not None:
    latest, state = restored
    log.info("resumed from step %d in %s", latest, workdir)
  else:
    state = init_fn(init_key)
    log.info(
      "generator %s params, discriminator %s params",
      f"{models.count_params(state.g_params):,}",
      f"{models.count_params(state.d_params):,}",
    )
  start_step = int(state.step)
  schedule_end = train_step.schedule_end_step(config, steps_per_epoch)
  if total_steps > schedule_end and start_step < total_steps:
    log.warning(
      "num_train_steps=%d goes past the learning-rate schedule, which reaches 0 at step %d "
      "((num_epochs + num_epochs_decay) x %d steps per epoch): steps after it change nothing",
      total_steps,
      schedule_end,
      steps_per_epoch,
    )
  if start_step >= total_steps:
    log.warning(
      "the checkpoint in %s is at step %d, past num_train_steps=%d: nothing to train",
      workdir,
      start_step,
      total_steps,
    )

  step_fn = train_step.compile_step(nets, mesh)
  predict_fn = jax.jit(
    functools.partial(common.predict_rgb, nets.generator, nets.color_space),
    compiler_options=xla_flags.forward_compiler_options(),
  )
  evaluation = evaluator.Evaluator(lambda variables, images, _: predict_fn(variables, images), mesh)

  # TensorBoard only: the console gets one progress line per log interval (below).
  writer = (
    metric_writers.AsyncWriter(metric_writers.SummaryWriter(workdir))
    if is_chief
    else metric_writers.MultiWriter([])
  )
  if start_step == 0:
    writer.write_hparams(_flatten(config.to_dict()))
  has_eval = _has_eval_data(config)
  sample_images = _sample_images(config) if has_eval else None
  train_iter = input_pipeline.create_train_iterator(config, start_step=start_step)
  profile = _profiler(config, workdir, start_step, total_steps) if is_chief else None

  history: list[tuple[int, dict[str, Any]]] = []
  last_log = (time.time(), start_step)
  stop = False
  with Preemption() as preemption:
    for step in range(start_step + 1, total_steps + 1):
      batch = parallel.to_global(next(train_iter), mesh)
      state, metrics = step_fn(state, batch, base_key)
      history.append((step, metrics))
      if profile is not None:
        profile(step)

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
          log.info(format_progress(step, total_steps, steps_per_sec, config.batch_size, scalars))
        history, last_log = [], (now, step)

      if sample_images is not None and (step % config.sample_every_steps == 0 or is_last):
        _write_samples(predict_fn, state, sample_images, workdir, writer, step, is_chief)

      eval_metrics = None
      if has_eval and (step % config.eval_every_steps == 0 or is_last):
        eval_metrics = evaluation.evaluate(
          state.generator_variables, input_pipeline.create_eval_iterator(config)
        )
        writer.write_scalars(step, {f"eval/{k}": v for k, v in eval_metrics.items()})

      if step % config.checkpoint_every_steps == 0 or is_last or stop or eval_metrics:
        # Never save a state whose step metrics have not been checked.
        history = jax.device_get(history)
        check_finite(history)
        checkpoint.save(manager, step, state, config, force=True, metrics=eval_metrics)
      if stop:
        log.warning("stopped at step %d on request; rerun the same command to resume", step)
        break

  if profile is not None:
    with contextlib.suppress(RuntimeError):  # a trace the loop left running (stop on request)
      jax.profiler.stop_trace()
  manager.wait_until_finished()
  manager.close()
  writer.flush()
  return state


def _profiler(
  config: ml_collections.ConfigDict, workdir: str, start_step: int, total_steps: int
) -> Any:
  """config.profile_steps > 0: clu's periodic_actions.Profile, a jax profiler trace of that many
  steps after warm-up into workdir/plugins/profile/ (TensorBoard's Profile tab); else None."""
  steps = int(config.get("profile_steps", 0))
  if steps <= 0:
    return None
  first = start_step + PROFILE_WARMUP_STEPS
  if first + steps > total_steps:
    log.warning(
      "config.profile_steps=%d: the run ends at step %d, before %d warm-up steps and the traced "
      "ones: no profile",
      steps,
      total_steps,
      PROFILE_WARMUP_STEPS,
    )
    return None
  from clu import periodic_actions

  log.info("profiling steps %d-%d into %s", first + 1, first + steps, workdir)
  return periodic_actions.Profile(
    logdir=workdir,
    num_profile_steps=steps,
    profile_duration_ms=None,
    first_profile=first,
    every_secs=None,
  )


def _has_eval_data(config: ml_collections.ConfigDict) -> bool:
  """Whether the eval split has any example; training goes on without one (with a warning)."""
  try:
    next(iter(input_pipeline.create_eval_iterator(config)))
  except (ValueError, StopIteration) as e:
    log.warning("no evaluation data, so no evaluation or sample grids: %s", e)
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
  grid = sample_grid.sample_grid(np.asarray(gray), np.asarray(generated), images)
  if is_chief:
    sample_grid.save_png(grid, os.path.join(workdir, "samples", f"step_{step:07d}.png"))
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
