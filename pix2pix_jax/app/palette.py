"""The in-gamut ab plane at a lightness (as ideepcolor's palette): the colours that exist in sRGB
at that L, laid out by Lab a (left to right) and b (bottom to top)."""

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import color

SIZE = 200  # the palette image's side in pixels
AB_RANGE = 110.0  # a and b span [-AB_RANGE, AB_RANGE]
# A Lab colour is in gamut if sRGB clipping moves it by less than this (CIE76 units).
_GAMUT_TOLERANCE = 1.0
_OUTSIDE = 238  # the page's background gray, where no colour exists at this L


def _ab_grid(size: int) -> np.ndarray:
  """The ab of each palette pixel, float32 [size, size, 2]: a rightwards, b upwards."""
  values = np.linspace(-AB_RANGE, AB_RANGE, size, dtype=np.float32)
  a, b = np.meshgrid(values, values[::-1])
  return np.stack([a, b], axis=-1)


def ab_at(x: float, y: float, size: int = SIZE) -> tuple[float, float]:
  """A palette pixel's (a, b)."""
  step = 2 * AB_RANGE / (size - 1)
  return -AB_RANGE + x * step, AB_RANGE - y * step


@jax.jit
def _colours(lab: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Lab colours [..., 3] -> (their uint8 sRGB, clipped to the gamut; whether each exists in
  sRGB: clipping barely moves it). One compiled program per shape (an edit's palette is one)."""
  rgb = color.lab_to_rgb(lab)
  inside = jnp.linalg.norm(color.rgb_to_lab(rgb) - lab, axis=-1) < _GAMUT_TOLERANCE
  return color.float_to_uint8(rgb), inside


def plane(lightness: float, size: int = SIZE) -> np.ndarray:
  """uint8 [size, size, 3]: every ab at `lightness` (0..100) in sRGB, gray where it is out of
  gamut; a dotted cross marks a = b = 0."""
  ab = _ab_grid(size)
  lab = np.concatenate([np.full(ab.shape[:2] + (1,), lightness, np.float32), ab], axis=-1)
  image, inside = (np.asarray(v) for v in _colours(lab))
  image = np.where(inside[..., None], image, np.uint8(_OUTSIDE))
  mid = size // 2
  image[mid, ::4] = image[::4, mid] = 128
  return image


def pick(lightness: float, x: float, y: float, size: int = SIZE) -> tuple[int, int, int] | None:
  """The uint8 sRGB of palette pixel (x, y) at `lightness`, or None where it is out of gamut."""
  rgb, inside = _colours(np.array([lightness, *ab_at(x, y, size)], np.float32))
  return tuple(int(v) for v in np.asarray(rgb)) if bool(inside) else None
