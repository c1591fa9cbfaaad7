"""One process's share of pix2pix-colorize's job list (--shard, SLURM defaults) and input lists
read from a file (--files-from); the rules: docs/video.md."""

import dataclasses
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TypeVar

from pix2pix_jax import errors
from pix2pix_jax.colorize.jobs import Job, kind_of

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Shard:
  index: int
  count: int
  source: str  # where it came from, for the log line: "--shard", "SLURM array task 5", ...


def parse(text: str) -> Shard:
  """`--shard K/N`; UserError naming the problem for anything else."""
  match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
  if match is None:
    raise errors.UserError(f"--shard {text}: expected K/N, e.g. --shard 0/4 (shards 0 to N-1)")
  return checked(int(match.group(1)), int(match.group(2)), f"--shard {text}")


def checked(index: int, count: int, source: str) -> Shard:
  if count < 1:
    raise errors.UserError(f"{source}: the number of shards must be at least 1")
  if not 0 <= index < count:
    raise errors.UserError(
      f"{source}: shard {index} does not exist (the {count} shard(s) are numbered 0 to {count - 1})"
    )
  return Shard(index, count, source)


def from_flags(shard: str | None, index: int | None, count: int | None) -> Shard | None:
  """The shard of --shard or --shard-index/--num-shards; None when none is given."""
  if shard is not None and (index is not None or count is not None):
    raise errors.UserError("give either --shard K/N or --shard-index K --num-shards N, not both")
  if shard is not None:
    return parse(shard)
  if (index is None) != (count is None):
    raise errors.UserError("--shard-index and --num-shards go together")
  if index is None:
    return None
  return checked(index, count, f"--shard-index {index} --num-shards {count}")


def _int(env: Mapping[str, str], name: str) -> int | None:
  value = env.get(name, "").strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise errors.UserError(f"{name}={value!r} is not a number") from None


def from_environment(env: Mapping[str, str]) -> Shard | None:
  """The shard SLURM's variables give this process (see the module docstring); None outside
  SLURM arrays and job steps."""
  array = None
  task = _int(env, "SLURM_ARRAY_TASK_ID")
  if task is not None:
    count = _int(env, "SLURM_ARRAY_TASK_COUNT")
    low = _int(env, "SLURM_ARRAY_TASK_MIN")
    low = 0 if low is None else low
    high = _int(env, "SLURM_ARRAY_TASK_MAX")
    step = _int(env, "SLURM_ARRAY_TASK_STEP") or 1
    if count is None:
      raise errors.UserError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")
    position, off = divmod(task - low, step)
    spaced = high is None or high == low + (count - 1) * step
    if off or not 0 <= position < count or not spaced:
      raise errors.UserError(
        f"SLURM array task {task}: the array's ids ({low} to {high}, {count} tasks) are not an "
        "evenly spaced range such as --array=0-3; give --shard K/N"
      )
    array = (position, count, task)
  steps = None
  if env.get("SLURM_STEP_ID", "").strip():
    rank = _int(env, "SLURM_PROCID")
    size = _int(env, "SLURM_STEP_NUM_TASKS") or _int(env, "SLURM_NTASKS")
    if rank is not None and size is not None and size > 1:
      steps = (rank, size)
  if array is None and steps is None:
    return None
  position, count, task = array if array is not None else (0, 1, None)
  rank, size = steps if steps is not None else (0, 1)
  parts = []
  if array is not None:
    parts.append(f"SLURM array task {task}, {position + 1} of {count}")
  if steps is not None:
    parts.append(f"SLURM task {rank} of {size}")
  return checked(position * size + rank, count * size, ", ".join(parts))


def _order(job: Job) -> tuple[int, str, str]:
  group = {"video": 0, None: 1, "image": 2}[kind_of(job.src)]
  return group, job.dst or "", job.src


def select(jobs: Sequence[Job], shard: Shard) -> list[Job]:
  """This shard's jobs, in the sorted order (see the module docstring)."""
  return split(sorted(jobs, key=_order), shard.index, shard.count)


def split(items: Sequence[T], index: int, count: int) -> list[T]:
  """Round-robin: items index, index + count, index + 2 * count, ..."""
  return list(items[index::count])


def read_list(path: str) -> list[str]:
  """The INPUTs of a --files-from list (see the module docstring); UserError if unreadable."""
  try:
    if path == "-":
      text = sys.stdin.read()
    else:
      with open(path, encoding="utf-8") as f:
        text = f.read()
  except OSError as e:
    raise errors.UserError(f"{path}: cannot read the --files-from list ({e.strerror})") from e
  except UnicodeDecodeError:
    raise errors.UserError(f"{path}: --files-from list is not UTF-8 text") from None
  lines = (line.strip() for line in text.splitlines())
  return [line for line in lines if line and not line.startswith("#")]


def resolve(
  shard: str | None, index: int | None, count: int | None, env: Mapping[str, str] | None = None
) -> Shard | None:
  """The flags' shard, else the environment's (os.environ by default), else None."""
  explicit = from_flags(shard, index, count)
  if explicit is not None:
    return explicit
  return from_environment(os.environ if env is None else env)
