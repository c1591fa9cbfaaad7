"""Checkpoints with orbax: the full train state and its config, atomically.

Layout: ``<workdir>/checkpoints/<step>/{state,config}``. orbax writes each step to
a temporary directory and renames it when complete, so a crash mid-write leaves
the previous checkpoint as the latest one that can be restored. This module is the only one
that knows the layout and the state's key names: generator-only restore and save (colourising,
evaluation, imported PyTorch weights) go through it.

orbax keeps no checksum of the array data (tensorstore checks only its index), so once a step is
final its files are sealed with a SHA-256 list (`<step>/SHA256SUMS`, the format `sha256sum -c`
reads), checked before the step is restored. A step that fails the check or cannot be read back
is skipped for the newest one that restores; training moves the bad ones to
`checkpoints/corrupt/<step>-<time>` (never deleted; orbax does not list that folder).
"""

import datetime
import hashlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from pix2pix_jax import config_lib, errors, files, metrics, models

log = logging.getLogger(__name__)
T = TypeVar("T")

# Inside each step folder: "<sha256>  <relative path>" lines for every other file of the step.
CONTENT_HASH_FILE = "SHA256SUMS"
# Beside the step folders: checkpoints moved aside because they failed to restore.
CORRUPT_DIR = "corrupt"

# Fields whose change makes an old checkpoint unusable (different parameter tree or meaning).
ARCHITECTURE_FIELDS = (
  "color_space",
  "model.num_downs",
  "model.ngf",
  "model.norm",
  "model.discriminator",
  "model.ndf",
  "model.n_layers_d",
)


class NoCheckpointError(errors.UserError, FileNotFoundError):
  """The path is not a training workdir, or holds no complete checkpoint."""


class CheckpointExistsError(errors.UserError, FileExistsError):
  """A generator-only checkpoint would be written into a workdir that already has checkpoints."""


class IncompatibleCheckpointError(errors.UserError, ValueError):
  """The workdir holds a checkpoint of a different architecture or colour space."""


class CorruptCheckpointError(errors.UserError):
  """A checkpoint's files differ from their content hash, or it cannot be read back."""


# The generator's entries of the saved state (the train state's field names) and the flax
# collections they hold.
_GENERATOR_ITEMS = {"g_params": "params", "g_batch_stats": "batch_stats"}


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def latest_step(workdir: str) -> int | None:
  """The newest finished checkpoint step of a workdir (orbax names finished steps by number)."""
  directory = checkpoint_dir(workdir)
  steps = [int(n) for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []
  return max(steps) if steps else None


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      digest.update(chunk)
  return digest.hexdigest()


def write_content_hash(step_dir: str) -> None:
  """Seals a final step folder: the SHA-256 of every file in it, in CONTENT_HASH_FILE."""
  lines = []
  for root, dirs, names in os.walk(step_dir):
    dirs.sort()
    for name in sorted(names):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel != CONTENT_HASH_FILE and not name.startswith(".tmp-"):
        lines.append(f"{_sha256(path)}  {rel}\n")
  files.write_atomic(os.path.join(step_dir, CONTENT_HASH_FILE), "".join(lines))


def verify_content_hash(step_dir: str) -> bool:
  """True if every file listed in the step's content hash is there and unchanged; False if
  the step was never sealed (saved by an older version, or killed before sealing). Raises
  CorruptCheckpointError naming the first file that is missing or differs."""
  hash_file = os.path.join(step_dir, CONTENT_HASH_FILE)
  if not os.path.exists(hash_file):
    return False
  try:
    with open(hash_file) as f:
      sums = [line.rstrip("\n").split("  ", 1) for line in f]
    if not sums or any(len(entry) != 2 or len(entry[0]) != 64 for entry in sums):
      raise ValueError("not a SHA-256 list")
  except (OSError, ValueError) as e:
    raise CorruptCheckpointError(f"{step_dir}: unreadable {CONTENT_HASH_FILE} ({e})") from e
  for digest, rel in sums:
    path = os.path.join(step_dir, rel)
    if not os.path.isfile(path):
      raise CorruptCheckpointError(f"{step_dir}: {rel} is missing")
    if _sha256(path) != digest:
      raise CorruptCheckpointError(f"{step_dir}: {rel} differs from its SHA-256 at save")
  return True


class Manager(ocp.CheckpointManager):
  """orbax's CheckpointManager that seals each step it saves once the step is final.

  orbax calls `wait_until_finished` before every save and on close, so a step is sealed
  before the next one starts. Only process 0 writes the hash (it sees every process's files on
  the shared filesystem that multi-host checkpointing needs).
  """

  def __init__(self, *args, **kwargs):
    self._unsealed: list[int] = []  # saved by this manager, not yet sealed
    super().__init__(*args, **kwargs)

  def save(self, step: int, *args, **kwargs) -> bool:
    saved = super().save(step, *args, **kwargs)
    if saved:
      self._unsealed.append(step)
    return saved

  def wait_until_finished(self) -> None:
    super().wait_until_finished()
    unsealed, self._unsealed = self._unsealed, []
    if jax.process_index() != 0:
      return
    for step in unsealed:
      step_dir = os.path.join(str(self.directory), str(step))
      if os.path.isdir(step_dir):  # not already removed by the keep policy
        write_content_hash(step_dir)


class _DropUnretrievedTaskErrors(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return "exception was never retrieved" not in record.getMessage()


def _quiet_failed_read_reports() -> None:
  """Drops the tracebacks that follow a failed read, which is reported once by the caller.

  orbax runs a restore on a fresh event loop and closes it as soon as one read fails;
  tensorstore's other reads then complete onto the closed loop and each is printed through
  `sys.unraisablehook` ("RuntimeError: Event loop is closed"), and the failed reads' tasks are
  logged by asyncio when collected ("Task exception was never retrieved"). Only those two kinds
  are dropped; anything else still reaches the previous hook and the `asyncio` logger.
  """
  previous = sys.unraisablehook
  if getattr(previous, "drops_closed_loop_reports", False):
    return

  def hook(unraisable):
    value = unraisable.exc_value
    if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
      previous(unraisable)

  hook.drops_closed_loop_reports = True
  sys.unraisablehook = hook
  logging.getLogger("asyncio").addFilter(_DropUnretrievedTaskErrors())


def _short_cause(e: BaseException) -> str:
  """The innermost cause of an orbax/tensorstore failure, in one line without its specs."""
  while e.__cause__ is not None:
    e = e.__cause__
  text = (str(e).strip().splitlines() or [type(e).__name__])[0]
  text = text.split(" [tensorstore_spec")[0].split(" See full TensorStore details")[0]
  return text if len(text) <= 300 else text[:297] + "..."


def _move_aside(directory: str, step: int) -> str:
  """Renames a step folder into CORRUPT_DIR (never deletes it); returns the new path."""
  stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
  target = os.path.join(directory, CORRUPT_DIR, f"{step}-{stamp}")
  os.makedirs(os.path.dirname(target), exist_ok=True)
  suffix = 0
  while os.path.exists(target + (f".{suffix}" if suffix else "")):
    suffix += 1
  target += f".{suffix}" if suffix else ""
  os.rename(os.path.join(directory, str(step)), target)
  return target


def restore_newest_good(
  manager: ocp.CheckpointManager,
  restore: Callable[[int], T],
  *,
  move_aside: bool,
) -> tuple[int, T] | None:
  """`restore(step)` of the newest step that passes its content hash and reads back.

  Newer steps that fail are logged (one line each, naming the folder and the cause) and, with
  `move_aside`, moved to `checkpoints/corrupt/` once an older one has restored. If none
  restores, nothing is moved and CorruptCheckpointError names each one. The project's own
  errors from `restore` (e.g. IncompatibleCheckpointError) are not corruption: they propagate.
  None if there is no checkpoint at all.
  """
  directory = str(manager.directory)
  failures: list[tuple[int, str]] = []
  _quiet_failed_read_reports()
  for step in sorted(manager.all_steps(), reverse=True):
    step_dir = os.path.join(directory, str(step))
    try:
      verify_content_hash(step_dir)
      result = restore(step)
    except CorruptCheckpointError as e:
      cause = str(e).removeprefix(f"{step_dir}: ")
    except errors.UserError:
      raise
    except Exception as e:  # orbax and tensorstore raise ValueError, OSError, bare Exception...
      cause = f"cannot be read back ({_short_cause(e)})"
    else:
      _agree_on_step(step)
      for bad, why in failures:
        bad_dir = os.path.join(directory, str(bad))
        if move_aside and jax.process_index() == 0:
          where = _move_aside(directory, bad)
          log.warning("corrupt checkpoint %s: %s; moved to %s", bad_dir, why, where)
        else:
          log.warning("corrupt checkpoint %s: %s; skipped", bad_dir, why)
      if failures and move_aside:
        _barrier("pix2pix_corrupt_moved")
        manager.reload()
      if failures:
        log.warning("restored the newest good checkpoint, step %d", step)
      return step, result
    failures.append((step, cause))
  if failures:
    raise CorruptCheckpointError(
      f"{directory}: no checkpoint can be restored ("
      + "; ".join(f"step {s}: {why}" for s, why in failures)
      + "); nothing was moved"
    )
  return None


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def _agree_on_step(step: int) -> None:
  """With several processes: raises unless every process restored the same step."""
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils

  steps = multihost_utils.process_allgather(np.array(step))
  if np.any(steps != step):
    raise CorruptCheckpointError(
      f"processes restored different checkpoints ({sorted(set(steps.tolist()))}): the "
      "checkpoint folder looks different from different hosts"
    )


def create_manager(
  workdir: str, config: ml_collections.ConfigDict, *, best_metric: str | None = None
) -> ocp.CheckpointManager:
  """Saves every `checkpoint_every_steps`; keeps the latest, every
  `keep_checkpoint_every_steps`-th and (if `best_metric` is set) the best by that metric."""
  cm = ocp.checkpoint_managers
  keep = [cm.LatestN(1), cm.EveryNSteps(config.keep_checkpoint_every_steps)]
  if best_metric:
    keep.append(
      cm.BestN(
        get_metric_fn=lambda metrics: metrics[best_metric],
        reverse=metrics.lower_is_better(best_metric),
        n=1,
        keep_checkpoints_without_metrics=False,
      )
    )
  options = ocp.CheckpointManagerOptions(
    save_decision_policy=cm.FixedIntervalPolicy(config.checkpoint_every_steps),
    preservation_policy=cm.AnyPreservationPolicy(keep),
    cleanup_tmp_directories=True,
  )
  return Manager(checkpoint_dir(workdir), options=options, item_names=("state", "config"))


def save(
  manager: ocp.CheckpointManager,
  step: int,
  state: Any,
  config: ml_collections.ConfigDict,
  *,
  force: bool = False,
  metrics: dict[str, float] | None = None,
) -> bool:
  """Saves asynchronously if the policy (or `force`) says so; returns whether it did."""
  args = ocp.args.Composite(
    state=ocp.args.PyTreeSave(state), config=ocp.args.JsonSave(config.to_dict())
  )
  return manager.save(step, args=args, force=force, metrics=metrics)


def read_config(manager: ocp.CheckpointManager, step: int) -> ml_collections.ConfigDict:
  """The config saved with a checkpoint, with fields renamed since then brought up to date."""
  restored = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
  config = dict(restored["config"])
  if "model" in config:
    config["model"] = models.conv.migrate_model_config(config["model"])
  return ml_collections.ConfigDict(config)


def check_compatible(saved: ml_collections.ConfigDict, current: ml_collections.ConfigDict) -> None:
  """Raises IncompatibleCheckpointError naming every architecture field that differs."""
  diffs = []
  for field in ARCHITECTURE_FIELDS:
    old, new = config_lib.get(saved, field), config_lib.get(current, field)
    if old != new:
      diffs.append(f"{field}: checkpoint has {old!r}, config has {new!r}")
  if diffs:
    raise IncompatibleCheckpointError(
      "the workdir's checkpoint was trained with a different architecture ("
      + "; ".join(diffs)
      + "); use a new --workdir or restore the original settings"
    )


def restore_state(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
  """Restores the full state onto the shardings carried by `abstract_state`
  (a pytree of jax.ShapeDtypeStruct)."""
  restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
  restored = manager.restore(
    step,
    args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(item=abstract_state, restore_args=restore_args)
    ),
  )
  return restored["state"]


def restore_training(
  manager: ocp.CheckpointManager, config: ml_collections.ConfigDict, abstract_state: Any
) -> tuple[int, Any] | None:
  """(step, state) of the newest checkpoint that is compatible with `config` and restores
  (see `restore_newest_good`; corrupt newer ones are moved aside); None if there is none."""

  def restore(step: int) -> Any:
    check_compatible(read_config(manager, step), config)
    return restore_state(manager, step, abstract_state)

  return restore_newest_good(manager, restore, move_aside=True)


def restore_generator(
  workdir: str, step: int | None = None
) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """Config and generator variables ({"params", "batch_stats"}) of a training workdir.

  Reads only the generator's arrays: no discriminator or optimiser state is built or loaded.
  `workdir` may also be a `checkpoints/` directory. Without `step`, the newest checkpoint that
  restores (corrupt newer ones are logged and skipped, never moved: that is training's job);
  with `step`, that one or CorruptCheckpointError naming it.
  """
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory) and os.path.basename(os.path.normpath(workdir)) == "checkpoints":
    directory = os.path.abspath(workdir)
  if not os.path.isdir(directory):
    raise NoCheckpointError(f"{workdir}: no checkpoints/ directory (is it a training workdir?)")
  # Explicit handlers: with item names alone, orbax cannot read the state's metadata in a
  # process that has not saved or restored it yet.
  handlers = {"state": ocp.PyTreeCheckpointHandler(), "config": ocp.JsonCheckpointHandler()}
  # Only read from: nothing is created or saved. (orbax's read_only option logs three warnings
  # on every use, which would show on every colourising run.)
  options = ocp.CheckpointManagerOptions(create=False, save_root_metadata=False)
  with ocp.CheckpointManager(directory, item_handlers=handlers, options=options) as manager:
    if step is None:
      found = restore_newest_good(manager, lambda s: _read_generator(manager, s), move_aside=False)
      if found is None:
        raise NoCheckpointError(f"{workdir}: no complete checkpoint to restore")
      return found[1]
    if step not in manager.all_steps():
      raise NoCheckpointError(f"{workdir}: no complete checkpoint at step {step}")
    step_dir = os.path.join(directory, str(step))
    verify_content_hash(step_dir)
    _quiet_failed_read_reports()
    try:
      return _read_generator(manager, step)
    except errors.UserError:
      raise
    except Exception as e:
      raise CorruptCheckpointError(f"{step_dir}: cannot be read back ({_short_cause(e)})") from e


def _read_generator(
  manager: ocp.CheckpointManager, step: int
) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  config = read_config(manager, step)
  metadata = manager.item_metadata(step)["state"]
  tree = metadata.tree if hasattr(metadata, "tree") else metadata
  item = {k: tree[k] for k in _GENERATOR_ITEMS}
  # Onto one local device, whatever the device count that saved it.
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=sharding), item)
  restored = manager.restore(
    step,
    args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True)
    ),
  )["state"]
  return config, {name: restored[key] or {} for key, name in _GENERATOR_ITEMS.items()}


def save_generator(
  workdir: str, config: ml_collections.ConfigDict, variables: dict[str, Any], step: int = 0
) -> None:
  """Writes a generator-only checkpoint (e.g. imported weights) into a workdir without one; it
  restores with `restore_generator` but cannot resume training."""
  directory = checkpoint_dir(workdir)
  if os.path.isdir(directory) and os.listdir(directory):
    raise CheckpointExistsError(f"{directory} already holds checkpoints; use a new --workdir")
  state = {key: variables.get(name, {}) for key, name in _GENERATOR_ITEMS.items()}
  with Manager(directory, item_names=("state", "config")) as manager:
    args = ocp.args.Composite(
      state=ocp.args.PyTreeSave(state), config=ocp.args.JsonSave(config.to_dict())
    )
    manager.save(step, args=args)
    manager.wait_until_finished()
