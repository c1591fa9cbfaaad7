"""What the page draws: the hint canvas (the photo's lightness with its hints on top, at the
display size) and the strip of recent colours."""

import numpy as np
from PIL import Image, ImageDraw

from pix2pix_jax.app import session

SWATCH = 32  # a recent colour's square, in pixels
_MARKER = 7  # a point's marker radius on the canvas, in display pixels


def draw(gray: np.ndarray, hints: session.HintState, photo_size: tuple[int, int]) -> np.ndarray:
  """uint8 [h, w, 3]: `gray` (the display-size lightness) with the hints drawn over it; points
  as rings in their colour, the selected hint outlined in white."""
  image = Image.fromarray(gray).convert("RGB")
  draw_ = ImageDraw.Draw(image)
  scale = gray.shape[1] / photo_size[0]
  for i, hint in enumerate(hints.hints):
    selected = i == hints.selected
    path = [((x + 0.5) * scale, (y + 0.5) * scale) for x, y in hint.path]
    if hint.is_point:
      (x, y), r = path[0], _MARKER
      ring = (255, 255, 255) if selected else (0, 0, 0)
      draw_.ellipse((x - r - 2, y - r - 2, x + r + 2, y + r + 2), fill=ring)
      draw_.ellipse((x - r, y - r, x + r, y + r), fill=hint.rgb)
      if selected:
        draw_.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(0, 0, 0))
      continue
    width = max(2, round(hint.width * scale))
    if selected:
      draw_.line(path, fill=(255, 255, 255), width=width + 6, joint="curve")
    if len(path) > 1:
      draw_.line(path, fill=hint.rgb, width=width, joint="curve")
    for x, y in (path[0], path[-1]):
      r = width / 2
      draw_.ellipse((x - r, y - r, x + r, y + r), fill=hint.rgb)
  return np.asarray(image)


def swatches(colours: tuple[session.RGB, ...], count: int = session.MAX_RECENT) -> np.ndarray:
  """uint8 [SWATCH, count * SWATCH, 3]: the recent colours left to right, light gray after."""
  strip = np.full((SWATCH, count * SWATCH, 3), 238, np.uint8)
  for i, rgb in enumerate(colours[:count]):
    strip[2:-2, i * SWATCH + 2 : (i + 1) * SWATCH - 2] = rgb
  return strip


def swatch_at(x: float, colours: tuple[session.RGB, ...]) -> session.RGB | None:
  i = int(x // SWATCH)
  return colours[i] if 0 <= i < len(colours) else None
