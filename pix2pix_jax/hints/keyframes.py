"""Keyframe hints for a clip, on the host: a keyframe file (JSON), a folder of scribbles named by
frame index, or one hint file (a keyframe at frame 0), read and checked against the clip as
`Keyframe`s sorted by frame."""

import json
import math
import os
import re
from typing import NamedTuple

import numpy as np

from pix2pix_jax import color, errors
from pix2pix_jax.hints import HintsError, files

# Pixels between the dense hints a `colour` keyframe gives, on a regular grid at frame size.
DEFAULT_COLOUR_SPACING = 16
# A time maps to the first frame shown at or after it (as ffmpeg's accurate -ss); a frame up to
# this much earlier still counts, so a time printed to the millisecond maps back to its frame.
_TIME_TOLERANCE = 1e-3
_SOURCES = ("points", "scribble", "colour", "painted")
# A pixel of a `painted` frame is a hint where its Lab chroma is at least this (the frame as
# pix2pix-keyframes writes it is gray: chroma 0).
PAINTED_MIN_CHROMA = 4.0
_KEYS = ("frame", "time") + _SOURCES
FRAME_NAME = re.compile(r"[0-9]+")  # a hint file's stem in a keyframe folder: a frame index


class Keyframe(NamedTuple):
  """Hints at full frame size given for one frame (a decoded frame index of the whole clip)."""

  frame: int
  hints: files.Hints


class _Clip(NamedTuple):
  """What keyframes are checked against: frame count, frame rate (None: unknown), frame size."""

  frames: int
  fps: float | None
  height: int
  width: int


def parse_seconds(text: str) -> float:
  """Seconds from "90", "1.5", "01:30" or "1:02:03.250" ([[HH:]MM:]SS[.fraction]); ValueError
  for anything else or a negative time."""
  parts = text.strip().split(":")
  if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"\d+(\.\d*)?|\.\d+", p) for p in parts):
    raise ValueError(f"{text!r} is not a time (seconds, or HH:MM:SS[.ms])")
  if any("." in p for p in parts[:-1]) or any(float(p) >= 60 for p in parts[1:]):
    raise ValueError(f"{text!r} is not a time (seconds, or HH:MM:SS[.ms])")
  seconds = 0.0
  for part in parts:
    seconds = seconds * 60 + float(part)
  return seconds


def frame_at(seconds: float, fps: float) -> int:
  """The first frame (index i, shown at i / fps) at or after `seconds` into the clip."""
  return max(0, math.ceil((seconds - _TIME_TOLERANCE) * fps))


def from_colour(rgb: np.ndarray, spacing: int = DEFAULT_COLOUR_SPACING, alpha=None) -> files.Hints:
  """A fully coloured frame, uint8 [H, W, 3] -> dense hints: its ab at the pixels of a regular
  grid every `spacing` pixels (offset by half a step), except where `alpha` is 0."""
  mask = np.zeros(rgb.shape[:2], bool)
  mask[spacing // 2 :: spacing, spacing // 2 :: spacing] = True
  if alpha is not None:
    mask &= np.asarray(alpha) > 0
  ab = np.zeros(rgb.shape[:2] + (2,), np.float32)
  if mask.any():
    lab = color.rgb_to_lab(color.uint8_to_float(rgb[mask]))
    ab[mask] = np.asarray(lab, np.float32)[..., 1:]
  return files.Hints(ab, mask)


def from_painted(rgb: np.ndarray, min_chroma: float = PAINTED_MIN_CHROMA) -> files.Hints:
  """A gray frame painted on, uint8 [H, W, 3] -> hints at its coloured pixels (Lab chroma at
  least `min_chroma`), each its own colour."""
  ab = np.asarray(color.rgb_to_lab(color.uint8_to_float(rgb)), np.float32)[..., 1:]
  mask = np.hypot(ab[..., 0], ab[..., 1]) >= min_chroma
  return files.Hints(np.where(mask[..., None], ab, 0.0).astype(np.float32), mask)


def load(
  path: str | os.PathLike,
  *,
  frames: int,
  fps: float | None,
  height: int,
  width: int,
  spacing: int = DEFAULT_COLOUR_SPACING,
) -> list[Keyframe]:
  """The keyframes of `path` for a clip of `frames` frames at `fps` (None: unknown; then only
  frame numbers can place keyframes), height x width: a keyframe file (.json holding
  {"keyframes": [...]}), a folder of scribbles named by frame index, or a scribble or point list
  (a keyframe at frame 0). Sorted by frame; HintsError (one line naming the file) otherwise."""
  path, clip = os.fspath(path), _Clip(frames, fps, height, width)
  if os.path.isdir(path):
    return _folder(path, clip)
  if not path.lower().endswith(".json"):
    return [Keyframe(0, files.as_hints(path, height, width, photo="the clip"))]
  if not os.path.isfile(path):
    raise HintsError(f"{path}: no such hint file")
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise HintsError(f"{path}: not a readable JSON hint file ({e})") from e
  if isinstance(data, list):
    return [Keyframe(0, files.from_points(data, height, width, source=path))]
  if not isinstance(data, dict):
    raise HintsError(f'{path}: expected {{"keyframes": [...]}} or a list of points')
  return _keyframe_file(path, data, clip, spacing)


def _keyframe_file(path: str, data: dict, clip: _Clip, spacing: int) -> list[Keyframe]:
  """A keyframe file's {"keyframes": [...]}: frames placed and checked first, then the hints."""
  for key in data:
    if key != "keyframes":
      raise HintsError(f'{path}: unknown key "{key}" (a keyframe file holds "keyframes")')
  entries = data.get("keyframes")
  if not isinstance(entries, list) or not entries:
    raise HintsError(f'{path}: "keyframes" must be a non-empty list')
  placed: dict[int, int] = {}
  for i, entry in enumerate(entries):
    where = f"{path}: keyframe {i}"
    if not isinstance(entry, dict):
      raise HintsError(
        f'{where}: expected {{"frame" or "time": .., "points", "scribble" or "colour": ..}}}}'
      )
    for key in entry:
      if key not in _KEYS:
        raise HintsError(f'{where}: unknown key "{key}" (one of {", ".join(_KEYS)})')
    frame = _frame_of(where, entry, clip)
    if frame in placed:
      raise HintsError(f"{where}: frame {frame} already has keyframe {placed[frame]}")
    placed[frame] = i
    given = [key for key in _SOURCES if key in entry]
    if len(given) != 1:
      got = " and ".join(f'"{k}"' for k in given) or "none"
      raise HintsError(
        f'{where}: give one of "points", "scribble", "colour" or "painted" (got {got})'
      )
  keyframes = []
  for frame, i in sorted(placed.items()):
    hints = _hints_of(f"{path}: keyframe {i}", entries[i], path, clip, spacing)
    keyframes.append(Keyframe(frame, hints))
  return keyframes


def _frame_of(where: str, entry: dict, clip: _Clip) -> int:
  """An entry's frame index, from "frame" or "time", checked against the clip's length."""
  given = [key for key in ("frame", "time") if key in entry]
  if len(given) != 1:
    raise HintsError(f'{where}: give one of "frame" or "time"')
  value = entry[given[0]]
  if given[0] == "frame":
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise HintsError(f'{where}: "frame" must be a frame index (0, 1, ...), got {value!r}')
    frame, what = value, f"frame {value}"
  else:
    try:
      if isinstance(value, str):
        seconds = parse_seconds(value)
      elif isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        seconds = float(value)
      else:
        raise ValueError(f"{value!r} is not a time (seconds, or HH:MM:SS[.ms])")
    except ValueError as e:
      raise HintsError(f"{where}: {e}") from e
    if not clip.fps:
      raise HintsError(f'{where}: the clip\'s frame rate is unknown: give "frame", not "time"')
    frame = frame_at(seconds, clip.fps)
    what = f"time {value} (frame {frame})"
  if frame >= clip.frames:
    raise HintsError(f"{where}: {what} is past the end of the clip ({clip.frames} frames)")
  return frame


def _hints_of(where: str, entry: dict, path: str, clip: _Clip, spacing: int) -> files.Hints:
  """An entry's hints from its "points", "scribble" or "colour" (image paths relative to the
  keyframe file at `path`)."""
  (kind,) = [key for key in _SOURCES if key in entry]
  value = entry[kind]
  if kind == "points":
    return files.from_points(value, clip.height, clip.width, source=where)
  if not isinstance(value, str) or not value:
    raise HintsError(f'{where}: "{kind}" must be an image file name, got {value!r}')
  image = os.path.join(os.path.dirname(path), value)
  try:
    if kind == "scribble":
      return files.as_hints(image, clip.height, clip.width, photo="the clip")
    rgb, alpha = _frame_file(image, clip)
    if kind == "painted":
      return from_painted(rgb)
    return from_colour(rgb, spacing, alpha)
  except HintsError as e:
    raise HintsError(f"{where}: {e}") from e


def _frame_file(image: str, clip: _Clip) -> tuple[np.ndarray, np.ndarray | None]:
  """A coloured or painted frame's file -> (rgb, alpha or None); HintsError naming it if
  unreadable or of another size than the clip's frames."""
  from pix2pix_jax import images  # noqa: PLC0415 (PIL: only hint images need it)

  try:
    loaded = images.load_image(image)
  except errors.UserError as e:  # files.MediaError: missing or not a readable image
    raise HintsError(str(e)) from e
  height, width = loaded.rgb.shape[:2]
  if (height, width) != (clip.height, clip.width):
    raise HintsError(
      f"{image}: frame image is {width}x{height}, the clip is {clip.width}x{clip.height}"
    )
  return loaded.rgb, loaded.alpha


def _folder(path: str, clip: _Clip) -> list[Keyframe]:
  """A folder of hint files named by frame index (000120.png, or .json point lists); names
  starting with "." are left out."""
  names = sorted(name for name in os.listdir(path) if not name.startswith("."))
  if not names:
    raise HintsError(f"{path}: the folder holds no scribbles (named by frame index: 000120.png)")
  by_frame: dict[int, str] = {}
  for name in names:
    stem = os.path.splitext(name)[0]
    if not FRAME_NAME.fullmatch(stem):
      raise HintsError(f"{path}: {name} is not named by a frame index (e.g. 000120.png)")
    frame = int(stem)
    if frame >= clip.frames:
      raise HintsError(
        f"{path}: {name}: frame {frame} is past the end of the clip ({clip.frames} frames)"
      )
    if frame in by_frame:
      raise HintsError(f"{path}: {name} and {by_frame[frame]} are both frame {frame}")
    by_frame[frame] = name
  return [
    Keyframe(
      frame,
      files.as_hints(os.path.join(path, name), clip.height, clip.width, photo="the clip"),
    )
    for frame, name in sorted(by_frame.items())
  ]
