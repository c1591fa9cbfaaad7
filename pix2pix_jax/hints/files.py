"""Hint files, on the host: a scribble image (RGBA, alpha > 0 pixels give their colour) or a JSON
point list, read and checked against the photo's size as full-resolution `Hints`."""

import json
import os
from typing import Any, NamedTuple

import numpy as np

from pix2pix_jax import color
from pix2pix_jax.hints import HintsError


class Hints(NamedTuple):
  """Hints at a photo's full resolution: ab [H, W, 2] (Lab units) where mask [H, W] is True."""

  ab: np.ndarray
  mask: np.ndarray

  @property
  def shape(self) -> tuple[int, int]:
    return self.mask.shape


def _ab_of_rgb(rgb: np.ndarray) -> np.ndarray:
  """uint8 [n, 3] -> Lab ab float32 [n, 2], converting each distinct colour once; their number
  is padded to a power of two (at least 8), so that another hint rarely compiles the
  conversion again."""
  rgb = np.asarray(rgb, np.uint8)
  keys = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
  keys, inverse = np.unique(keys, return_inverse=True)
  n = len(keys)
  padded = np.zeros((max(8, 1 << (n - 1).bit_length()), 3), np.uint8)
  padded[:n] = np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], axis=1)
  ab = np.asarray(color.rgb_to_lab(color.uint8_to_float(padded))[:n, 1:], np.float32)
  return ab[inverse.reshape(-1)]


def from_rgba(rgba: np.ndarray) -> Hints:
  """A scribble image, uint8 [H, W, 4]: the pixels with alpha > 0 give their colour."""
  rgba = np.asarray(rgba)
  if rgba.ndim != 3 or rgba.shape[-1] != 4 or rgba.dtype != np.uint8:
    raise HintsError(
      f"a scribble image must be uint8 RGBA [H, W, 4], got {rgba.dtype} {rgba.shape}"
    )
  mask = rgba[..., 3] > 0
  ab = np.zeros(mask.shape + (2,), np.float32)
  if mask.any():
    ab[mask] = _ab_of_rgb(rgba[..., :3][mask])
  return Hints(ab, mask)


def _parse_points(points: Any, source: str) -> list[tuple[float, float, list[float]]]:
  """A point list's (x, y, rgb) per point, its form checked (no photo size needed): HintsError
  naming `source` if it is not `[{"x": .., "y": .., "rgb": [r, g, b]}, ...]`, rgb 0..255."""
  if not isinstance(points, list):
    raise HintsError(f'{source}: expected a list of {{"x": .., "y": .., "rgb": [r, g, b]}}')
  parsed = []
  for i, p in enumerate(points):
    try:
      x, y, c = float(p["x"]), float(p["y"]), [float(v) for v in p["rgb"]]
    except (KeyError, TypeError, ValueError) as e:
      raise HintsError(f'{source}: point {i} is not {{"x": .., "y": .., "rgb": [r, g, b]}}') from e
    if len(c) != 3 or not all(0 <= v <= 255 for v in c):
      raise HintsError(f"{source}: point {i}: rgb must be three values in 0..255, got {p['rgb']}")
    parsed.append((x, y, c))
  return parsed


def from_points(points: Any, height: int, width: int, *, source: str = "points") -> Hints:
  """`[{"x": .., "y": .., "rgb": [r, g, b]}, ...]` (pixel coordinates of a height x width photo,
  rgb 0..255) -> Hints; each point marks the pixel it falls in. HintsError naming `source` for
  anything else."""
  parsed = _parse_points(points, source)
  mask = np.zeros((height, width), bool)
  rgb = np.zeros((height, width, 3), np.uint8)
  for i, (x, y, c) in enumerate(parsed):
    if not (0 <= x < width and 0 <= y < height):
      raise HintsError(
        f"{source}: point {i} at x={x:g}, y={y:g} is outside the {width}x{height} photo"
      )
    mask[int(y), int(x)] = True
    rgb[int(y), int(x)] = np.round(c).astype(np.uint8)
  ab = np.zeros((height, width, 2), np.float32)
  if mask.any():
    ab[mask] = _ab_of_rgb(rgb[mask])
  return Hints(ab, mask)


def read(path: str) -> np.ndarray | list:
  """A hint file, not yet sized: a JSON point list (.json) or an RGBA image (uint8 [H, W, 4]).
  HintsError (one line naming the file) if it cannot be read or is not a hint file."""
  if not os.path.isfile(path):
    raise HintsError(f"{path}: no such hint file")
  if path.lower().endswith(".json"):
    try:
      with open(path, encoding="utf-8") as f:
        points = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
      raise HintsError(f"{path}: not a readable JSON point list ({e})") from e
    _parse_points(points, path)
    return points
  from PIL import Image  # noqa: PLC0415 (only colourising reads hint images)

  from pix2pix_jax import images  # noqa: PLC0415

  try:
    image, _ = images.open_upright(path)
    rgb, alpha = images.to_rgb(image, images.FOR_COLORIZING)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise HintsError(f"{path}: not a readable hint image ({e})") from e
  if alpha is None:
    raise HintsError(
      f"{path}: hint image has no transparency (paint the hints on a transparent layer, "
      "save as RGBA PNG)"
    )
  return np.concatenate([rgb, alpha[..., None]], axis=-1)


def as_hints(
  value: Any, height: int, width: int, *, source: str = "hints", photo: str = "the photo"
) -> Hints:
  """Hints, an RGBA scribble array, a point list or a hint file path -> Hints for a
  height x width photo. HintsError naming `source` if they do not fit it."""
  if isinstance(value, (str, os.PathLike)):
    source = os.fspath(value)
    value = read(source)
  if isinstance(value, Hints):
    hints = value
  elif isinstance(value, list):
    return from_points(value, height, width, source=source)
  else:
    hints = from_rgba(np.asarray(value))
  if hints.shape != (height, width):
    raise HintsError(
      f"{source}: hint image is {hints.shape[1]}x{hints.shape[0]}, {photo} is {width}x{height}"
    )
  return hints


def load(path: str, height: int, width: int) -> Hints:
  """`read` then `as_hints`: a hint file's Hints for a height x width photo."""
  return as_hints(read(path), height, width, source=path)
