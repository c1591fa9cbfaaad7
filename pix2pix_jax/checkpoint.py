"""Checkpoints with orbax: the full train state and its config, written atomically to
`<workdir>/checkpoints/<step>/{state,config}`. The only module that knows this layout and the
state's key names (generator-only save and restore go through it too); seals and the fallback to
the newest good step are `checkpoint_integrity` (docs/reliability.md).
"""

import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from pix2pix_jax import checkpoint_integrity as integrity
from pix2pix_jax import config_lib, errors, metrics, models

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
  return integrity.Manager(checkpoint_dir(workdir), options=options, item_names=("state", "config"))


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
  """(step, state) of the newest checkpoint that is compatible with `config` and restores (see
  `checkpoint_integrity.restore_newest_good`; corrupt newer ones are moved aside); None if there
  is none."""

  def restore(step: int) -> Any:
    check_compatible(read_config(manager, step), config)
    return restore_state(manager, step, abstract_state)

  return integrity.restore_newest_good(manager, restore, move_aside=True)


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
      found = integrity.restore_newest_good(
        manager, lambda s: _read_generator(manager, s), move_aside=False
      )
      if found is None:
        raise NoCheckpointError(f"{workdir}: no complete checkpoint to restore")
      return found[1]
    if step not in manager.all_steps():
      raise NoCheckpointError(f"{workdir}: no complete checkpoint at step {step}")
    step_dir = os.path.join(directory, str(step))
    return integrity.restore_sealed(step_dir, lambda: _read_generator(manager, step))


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
  with integrity.Manager(directory, item_names=("state", "config")) as manager:
    args = ocp.args.Composite(
      state=ocp.args.PyTreeSave(state), config=ocp.args.JsonSave(config.to_dict())
    )
    manager.save(step, args=args)
    manager.wait_until_finished()
