"""pix2pix-colorize's job list: each input's output (layout: README.md), collisions, image or
video, and --skip-existing (docs/reliability.md)."""

import dataclasses
import glob
import os

from pix2pix_jax import files, images
from pix2pix_jax.colorize.video import probe


@dataclasses.dataclass
class Job:
  src: str
  dst: str | None  # None when `error` is set
  kind: str | None = None  # "image" | "video"
  error: str | None = None
  skipped: bool = False  # --skip-existing and the output exists
  hints: str | None = None  # its hint file or keyframe file/folder (--hints)


def _has_glob(text: str) -> bool:
  return any(ch in text for ch in "*?[")


def kind_of(path: str) -> str | None:
  """'image', 'video' or None (not a media file by its extension)."""
  ext = os.path.splitext(path)[1].lower()
  if ext in images.IMAGE_EXTENSIONS:
    return "image"
  if ext in probe.VIDEO_EXTENSIONS:
    return "video"
  return None


def _media_files(folder: str) -> list[str]:
  found = []
  for root, dirs, names in os.walk(folder):
    dirs.sort()
    found += [os.path.join(root, f) for f in sorted(names) if kind_of(f)]
  return found


def plan(inputs: list[str], output: str) -> list[Job]:
  """Expands INPUTs and decides every output path (see the module docstring)."""
  single = (
    len(inputs) == 1
    and os.path.isfile(inputs[0])
    and bool(os.path.splitext(output)[1])
    and not os.path.isdir(output)
  )
  if single:
    return _check_outputs([Job(inputs[0], output)])
  blocker = _file_in_the_way(output)
  if blocker is not None:
    return [Job(output, None, error=f"{output}: {blocker} is a file, but the output is a folder")]
  jobs: list[Job] = []
  for item in inputs:
    if os.path.isdir(item):
      found = _media_files(item)
      if not found:
        jobs.append(Job(item, None, error=f"{item}: folder holds no image or video files"))
      jobs += [Job(f, os.path.join(output, os.path.relpath(f, item))) for f in found]
    elif os.path.exists(item):
      jobs.append(Job(item, os.path.join(output, os.path.basename(item))))
    elif _has_glob(item):
      found = sorted(f for f in glob.glob(item, recursive=True) if os.path.isfile(f))
      if not found:
        jobs.append(Job(item, None, error=f"{item}: no file matches"))
      jobs += [Job(f, os.path.join(output, os.path.basename(f))) for f in found]
    else:
      jobs.append(Job(item, None, error=f"{item}: no such file or directory"))
  return _check_outputs(jobs)


def _check_outputs(jobs: list[Job]) -> list[Job]:
  """Refuses an output that is an input (also through symlinks, `..` or hard links) and one
  output written by two inputs; an input listed twice (same file, same output) runs once."""
  inputs = {}
  for job in jobs:
    if (identity := _file_identity(job.src)) is not None:
      inputs.setdefault(identity, job.src)
  seen: dict[str, Job] = {}
  kept = []
  for job in jobs:
    if job.dst is not None:
      key = os.path.realpath(job.dst)
      clash = inputs.get(_file_identity(job.dst))
      if clash is not None:
        job.error = f"{job.dst}: output is the input file {clash}; choose another --output"
        job.dst = None
      elif key in seen:
        identity = _file_identity(job.src)
        if identity is not None and identity == _file_identity(seen[key].src):
          continue  # the same file given twice (or found twice through a symlink loop)
        job.error = f"{job.src}: output {job.dst} would also be written by {seen[key].src}"
        job.dst = None
      else:
        seen[key] = job
    kept.append(job)
  return kept


def _file_in_the_way(folder: str) -> str | None:
  """The existing non-folder at `folder` or above it, which would stop it being created."""
  path = os.path.abspath(folder)
  while not os.path.lexists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return None if os.path.isdir(path) else path


def _file_identity(path: str) -> tuple[int, int] | None:
  """(device, inode) of an existing file, the same through symlinks, `..` and hard links."""
  try:
    st = os.stat(path)
  except OSError:
    return None
  return st.st_dev, st.st_ino


def classify(job: Job) -> None:
  """Sets job.kind from the extension, or from ffmpeg for files without a known one."""
  if job.error:
    return
  kind = kind_of(job.src)
  if kind is None:
    try:
      probe.probe(job.src)
      kind = "video"
    except files.MediaError:
      job.error = f"{job.src}: not an image or video file"
      return
  out_kind = kind_of(job.dst)
  if out_kind is None and kind == "video":
    out_kind = "video"  # e.g. an extension-less input copied to OUT/name
  if out_kind != kind:
    job.error = f"{job.dst}: output extension does not suit a {kind} input"
    return
  job.kind = kind


def skip_existing(jobs: list[Job], *, skip: bool) -> None:
  """Removes what killed runs left beside the outputs; with `skip`, marks jobs whose output
  exists as skipped (an output only exists complete: see files.atomic_output)."""
  for folder in sorted({os.path.dirname(os.path.abspath(job.dst)) for job in jobs if job.dst}):
    removed = files.remove_stale_temps(folder)
    if removed:
      print(f"removed {len(removed)} unfinished file(s) of an interrupted run from {folder}")
    if old := files.hostless_temps(folder):
      print(
        f"left {len(old)} temporary file(s) named without a host in {folder} alone "
        "(an older version's; remove them by hand once no older run writes there)"
      )
  for job in jobs:
    if skip and not job.error and os.path.exists(job.dst):
      job.skipped = True
