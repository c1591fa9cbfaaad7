"""A chunked run's resume files in `.NAME.chunks/` beside the output: names, fingerprint, the
smoothing state each chunk leaves for the next, tidying and the join (docs/video.md)."""

import contextlib
import fractions
import hashlib
import os
import re
import subprocess
import weakref
from typing import Any

import jax
import numpy as np

from pix2pix_jax import files
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import probe, temporal
from pix2pix_jax.colorize.video.chunk_plan import Chunk
from pix2pix_jax.colorize.video.source import Source

_FORMAT_VERSION = "2"
HEAD, BODY, STATE = ".head.nut", ".body.nut", ".state.npz"
KINDS = (HEAD, BODY, STATE)
_NAME = re.compile(r"^([0-9a-f]{16})-(\d{9})-(\d{9})(\.head\.nut|\.body\.nut|\.state\.npz)$")

_model_digests: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def model_digest(colorizer: colorizer_lib.Colorizer) -> str:
  """A digest of the generator's weights (computed once per Colorizer)."""
  digest = _model_digests.get(colorizer)
  if digest is None:
    h = hashlib.blake2b(digest_size=16)
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(colorizer.variables))
    for path, leaf in leaves:
      leaf = np.asarray(leaf)
      h.update(f"{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape}".encode())
      h.update(np.ascontiguousarray(leaf).tobytes())
    digest = _model_digests[colorizer] = h.hexdigest()
  return digest


def fingerprint(colorizer: colorizer_lib.Colorizer, source: Source, settings: dict) -> str:
  """16 hex digits naming everything a chunk's pixels depend on: the model's weights, the colour
  controls, the source (path, size, mtime) and `settings` (smoothing, encoding, the hints'
  digest, ...). The chunk's frame range is in its name."""
  stat = os.stat(source.path)
  reference = colorizer.reference
  parts = {
    "version": _FORMAT_VERSION,
    "model": model_digest(colorizer),
    "color_space": colorizer.color_space,
    "render_size": colorizer.render_size,
    "batch_size": colorizer.batch_size,
    "saturation": float(colorizer.saturation),
    "reference": None
    if reference is None
    else hashlib.sha256(
      b"".join(np.asarray(x, np.float64).tobytes() for x in jax.tree_util.tree_leaves(reference))
    ).hexdigest(),
    "source": [os.path.abspath(source.path), stat.st_size, stat.st_mtime_ns],
    "backend": source.backend,
    "total": source.total,
    "fps": str(source.fps),
    **settings,
  }
  return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:16]


def chunk_folder(dst: str) -> str:
  """The hidden folder beside `dst` that holds its finished chunks: `.NAME.chunks`."""
  folder, name = os.path.split(os.path.abspath(dst))
  return os.path.join(folder, f".{name}.chunks")


def chunk_path(folder: str, fp: str, chunk: Chunk, kind: str) -> str:
  """The chunk's HEAD, BODY or STATE file."""
  return os.path.join(folder, f"{fp}-{chunk.start:09d}-{chunk.end:09d}{kind}")


def is_finished(folder: str, fp: str, chunk: Chunk) -> bool:
  return os.path.exists(chunk_path(folder, fp, chunk, STATE))


def tidy(folder: str, fp: str) -> None:
  """Removes what a killed run left in `folder` (files in progress, segments of chunks without
  a state file) and the files of other fingerprints."""
  files.remove_stale_temps(folder)
  names = os.listdir(folder)
  finished = {n[: -len(STATE)] for n in names if n.endswith(STATE)}
  for name in names:
    match = _NAME.match(name)
    stale = match and (match.group(1) != fp or name[: -len(match.group(4))] not in finished)
    if stale or name == "concat.txt":
      with contextlib.suppress(OSError):
        os.remove(os.path.join(folder, name))


def save_state(path: str, state: temporal.SmoothState | None) -> None:
  """Writes the state after a chunk (None: no smoothing) to `path`, atomically."""
  arrays = {} if state is None else {k: np.asarray(v) for k, v in state._asdict().items()}
  with files.atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)


def load_state(path: str) -> temporal.SmoothState | None:
  with np.load(path) as data:
    if not data.files:
      return None
    return temporal.SmoothState(**{k: jax.numpy.asarray(data[k]) for k in data.files})


def join(segments: list[tuple[str, int]], fps: fractions.Fraction, folder: str, out: str) -> None:
  """The segments' (path, frames) video streams, one after the other, into `out` by stream copy.
  Each segment's duration is given (frames / fps): the concat demuxer would otherwise take the
  last frame's time as a segment's end and lose a frame's duration at every join."""
  listing = os.path.join(folder, "concat.txt")
  with open(listing, "w") as f:
    for path, frames in segments:
      f.write(f"file '{os.path.basename(path)}'\n")
      f.write(f"duration {float(frames / fps):.9f}\n")
  cmd = [probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
  cmd += ["-f", "concat", "-safe", "0", "-i", listing, "-map", "0:v:0", "-c", "copy"]
  if os.path.splitext(out)[1].lower() in (".mp4", ".m4v", ".mov"):
    cmd += ["-movflags", "+faststart"]
  proc = subprocess.run([*cmd, out], capture_output=True, text=True, errors="replace")
  os.remove(listing)
  if proc.returncode:
    raise files.MediaError(f"{out}: cannot join the chunks ({probe.ffmpeg_cause(proc.stderr)})")
