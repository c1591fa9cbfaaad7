"""Full-resolution hints -> the generator's hint channels at the render size, on the host (sums
over the hint pixels alone, then `device.encode`): a render pixel whose footprint holds any hint
pixel is a hint, so no hint is lost in the resize however small it is."""

import numpy as np

from pix2pix_jax.hints import device, files


def _footprints(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Source index ranges [start, end) of each of `size` render pixels over `n` source pixels:
  they cover every source pixel, and each holds at least one. Downsampling (n >= size) they
  partition the source; upsampling, a source pixel spans the render pixels it stretches over."""
  i = np.arange(size)
  start = (i * n) // size
  end = np.maximum(start + 1, ((i + 1) * n) // size)
  return start, end


def _spans(coords: np.ndarray, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """For source indices `coords` along an axis of n pixels: the render pixels [lo, hi] whose
  footprints hold each (contiguous, as the footprints' ends never decrease)."""
  start, end = _footprints(n, size)
  lo = np.searchsorted(end, coords, side="right")
  hi = np.searchsorted(start, coords, side="right") - 1
  return lo, hi


def rasterize_points(
  yx: np.ndarray, ab: np.ndarray, shape: tuple[int, int], size: int
) -> np.ndarray:
  """`rasterize` of hint pixels (y, x) int [k, 2] (distinct) with ab [k, 2] on a height x width
  image (a clip's per-frame hints come so; no full-size array is needed)."""
  (height, width), k = shape, len(yx)
  ylo, yhi = _spans(yx[:, 0], height, size)
  xlo, xhi = _spans(yx[:, 1], width, size)
  # Each hint pixel counted in every render pixel of its rows x columns (one, downsampling).
  rows, cols = yhi - ylo + 1, xhi - xlo + 1
  counts = rows * cols
  owner = np.repeat(np.arange(k), counts)
  offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
  ry = ylo[owner] + offset // cols[owner]
  rx = xlo[owner] + offset % cols[owner]
  cell = ry * size + rx
  sums = np.zeros((size * size, 3))
  np.add.at(sums, cell, np.c_[ab[owner].astype(np.float64), np.ones(len(owner))])
  sums = sums.reshape(size, size, 3)
  count = sums[..., 2]
  out_mask = count > 0
  out = np.where(out_mask[..., None], sums[..., :2] / np.maximum(count, 1e-12)[..., None], 0.0)
  return np.asarray(device.encode(out.astype(np.float32), out_mask))


def rasterize(hints: files.Hints, size: int) -> np.ndarray:
  """Full-resolution hints -> the encoded hint channels float32 [size, size, 3] at the render
  size (the photo is squeezed to a square there, as its luminance is). A render pixel is a hint
  if its footprint holds any hint pixel; its ab is their mean (`device.encode`)."""
  ys, xs = np.nonzero(hints.mask)
  return rasterize_points(np.stack([ys, xs], axis=1), hints.ab[ys, xs], hints.shape, size)
