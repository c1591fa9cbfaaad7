"""--hints for pix2pix-colorize's inputs: one hint file (or keyframe folder) for every input, or a
folder holding a hint file per input, found by the input's name (README.md, "Colour hints")."""

import os

from pix2pix_jax.colorize.jobs import Job
from pix2pix_jax.hints import keyframes


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def _entries(folder: str) -> dict[str, list[str]]:
  """The folder's visible entries by stem (a sub-folder by its name)."""
  found: dict[str, list[str]] = {}
  for name in sorted(os.listdir(folder)):
    if not name.startswith("."):
      path = os.path.join(folder, name)
      found.setdefault(name if os.path.isdir(path) else _stem(name), []).append(path)
  return found


def per_input(folder: str, jobs: list[Job]) -> bool:
  """Whether `folder` holds a hint file per input: some entry is named as an input is, or none
  is named by a frame index (as a clip's keyframe folder's are: 000120.png, ...)."""
  entries = _entries(folder)
  if any(_stem(job.src) in entries for job in jobs):
    return True
  return not any(keyframes.FRAME_NAME.fullmatch(stem) for stem in entries)


def assign(jobs: list[Job], hints: str | None, every: list[Job] | None = None) -> int:
  """Sets each job's `hints` from --hints; the number of inputs left without (a per-input
  folder with no file of theirs). An input with two candidates (film.json and film/) fails.
  every: all the command's inputs, where `jobs` is a shard of them (the folder is read alike)."""
  if hints is None:
    return 0
  if not os.path.isdir(hints) or not per_input(hints, every or jobs):
    for job in jobs:
      job.hints = hints
    return 0
  entries, missing = _entries(hints), 0
  for job in (job for job in jobs if not job.error):
    found = entries.get(_stem(job.src), [])
    if len(found) > 1:
      names = " and ".join(os.path.basename(p) for p in found)
      job.error = f"{hints}: {names} both give hints for {job.src}"
    elif found:
      job.hints = found[0]
    else:
      missing += 1
  return missing
