"""Checkpoint integrity: SHA-256 seals of final steps (`<step>/SHA256SUMS`, as `sha256sum -c`
reads them), the sealing manager, and restoring the newest step that passes its check (training
moves bad ones to `checkpoints/corrupt/`). Details: docs/reliability.md ("Corrupt checkpoints").
"""

import datetime
import functools
import hashlib
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp

from pix2pix_jax import errors, files

log = logging.getLogger(__name__)
T = TypeVar("T")

# Inside each step folder: "<sha256>  <relative path>" lines for every other file of the step.
CONTENT_HASH_FILE = "SHA256SUMS"
# Beside the step folders: checkpoints moved aside because they failed to restore.
CORRUPT_DIR = "corrupt"


class CorruptCheckpointError(errors.UserError):
  """A checkpoint's files differ from their content hash, or it cannot be read back."""


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


def restore_sealed(step_dir: str, restore: Callable[[], T]) -> T:
  """`restore()` of the step in `step_dir` once its content hash passes. A read that fails
  becomes CorruptCheckpointError naming the folder and the cause; the project's own errors
  (e.g. IncompatibleCheckpointError) propagate as they are."""
  verify_content_hash(step_dir)
  _quiet_failed_read_reports()
  try:
    return restore()
  except errors.UserError:
    raise
  except Exception as e:  # orbax and tensorstore raise ValueError, OSError, bare Exception...
    raise CorruptCheckpointError(f"{step_dir}: cannot be read back ({_short_cause(e)})") from e


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
  for step in sorted(manager.all_steps(), reverse=True):
    step_dir = os.path.join(directory, str(step))
    try:
      result = restore_sealed(step_dir, functools.partial(restore, step))
    except CorruptCheckpointError as e:
      cause = str(e).removeprefix(f"{step_dir}: ")
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
