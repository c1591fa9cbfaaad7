"""Sample grids: rows of grayscale input, generated colour and real colour."""

import io

import numpy as np
from PIL import Image

from pix2pix_jax import files


def sample_grid(
  gray: np.ndarray, generated: np.ndarray, real: np.ndarray, pad: int = 2
) -> np.ndarray:
  """uint8 [N,H,W,1|3] x3 -> one uint8 [3*(H+pad)+pad, N*(W+pad)+pad, 3] image, white-padded."""
  rows = [np.broadcast_to(r, r.shape[:3] + (3,)) for r in (gray, generated, real)]
  n, h, w, _ = rows[0].shape
  grid = np.full((3 * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
  for r, row in enumerate(rows):
    for c in range(n):
      y, x = pad + r * (h + pad), pad + c * (w + pad)
      grid[y : y + h, x : x + w] = row[c]
  return grid


def save_png(image: np.ndarray, path: str) -> None:
  """Writes a PNG atomically (temporary file, then rename), creating the folder."""
  data = io.BytesIO()
  Image.fromarray(image).save(data, format="PNG")
  files.write_atomic(path, data.getvalue())
