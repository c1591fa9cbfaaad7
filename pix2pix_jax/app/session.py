"""One browser session's hints: points and strokes in the photo's pixels, the selected one, undo
history and recent colours. Immutable: every edit returns a new HintState, so a session's state
(kept by Gradio per browser tab) is never shared or changed under another.

The hints as files: `scribble` is the RGBA PNG pix2pix-colorize --hints takes, `points` its JSON
form (one entry per hint pixel), and both give the same colours.
"""

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
XY = tuple[int, int]

MAX_UNDO = 100
MAX_RECENT = 8


@dataclasses.dataclass(frozen=True)
class Hint:
  """A point (one pixel) or a stroke (a polyline `width` pixels wide), in photo pixels."""

  path: tuple[XY, ...]
  rgb: RGB
  width: int = 1

  @property
  def is_point(self) -> bool:
    return len(self.path) == 1 and self.width == 1

  def moved(self, dx: int, dy: int, width: int, height: int) -> "Hint":
    path = tuple((_clip(x + dx, width), _clip(y + dy, height)) for x, y in self.path)
    return dataclasses.replace(self, path=path)

  def distance(self, x: float, y: float) -> float:
    """From (x, y) to the hint's nearest pixel (0 inside a stroke)."""
    ends = self.path[1:] or self.path
    best = min(_segment_distance(x, y, a, b) for a, b in zip(self.path, ends, strict=False))
    return max(0.0, best - self.width / 2)

  def describe(self) -> str:
    colour = hex_of(self.rgb)
    if self.is_point:
      return f"point at ({self.path[0][0]}, {self.path[0][1]}) {colour}"
    return f"stroke of {len(self.path)} points from {self.path[0]} {colour}"


@dataclasses.dataclass(frozen=True)
class HintState:
  """The hints of one photo, the selected one's index and what undo returns to."""

  hints: tuple[Hint, ...] = ()
  selected: int | None = None
  history: tuple[tuple[tuple[Hint, ...], int | None], ...] = ()
  recent: tuple[RGB, ...] = ()

  @property
  def selected_hint(self) -> Hint | None:
    return None if self.selected is None else self.hints[self.selected]

  def _edit(self, hints: tuple[Hint, ...], selected: int | None) -> "HintState":
    history = (*self.history, (self.hints, self.selected))[-MAX_UNDO:]
    return dataclasses.replace(self, hints=hints, selected=selected, history=history)

  def add(self, hint: Hint) -> "HintState":
    state = self._edit((*self.hints, hint), len(self.hints))
    return state.used(hint.rgb)

  def used(self, rgb: RGB) -> "HintState":
    """`rgb` first among the recent colours."""
    recent = (rgb, *(c for c in self.recent if c != rgb))[:MAX_RECENT]
    return dataclasses.replace(self, recent=recent)

  def select(self, index: int | None) -> "HintState":
    if index is not None and not 0 <= index < len(self.hints):
      index = None
    return dataclasses.replace(self, selected=index)

  def hint_at(self, x: float, y: float, radius: float) -> int | None:
    """The index of the topmost hint within `radius` photo pixels of (x, y), or None."""
    for i in reversed(range(len(self.hints))):
      if self.hints[i].distance(x, y) <= radius:
        return i
    return None

  def recolour(self, rgb: RGB) -> "HintState":
    """The selected hint in `rgb` (no hint selected: only remembered as recent)."""
    hint = self.selected_hint
    if hint is None or hint.rgb == rgb:
      return self.used(rgb) if hint is None else self
    hints = list(self.hints)
    hints[self.selected] = dataclasses.replace(hint, rgb=rgb)
    return self._edit(tuple(hints), self.selected).used(rgb)

  def move(self, index: int, dx: int, dy: int, width: int, height: int) -> "HintState":
    hints = list(self.hints)
    hints[index] = hints[index].moved(dx, dy, width, height)
    return self._edit(tuple(hints), index)

  def delete(self) -> "HintState":
    if self.selected is None:
      return self
    hints = self.hints[: self.selected] + self.hints[self.selected + 1 :]
    return self._edit(hints, None)

  def clear(self) -> "HintState":
    return self._edit((), None) if self.hints else self

  def undo(self) -> "HintState":
    if not self.history:
      return self
    (hints, selected), history = self.history[-1], self.history[:-1]
    return dataclasses.replace(self, hints=hints, selected=selected, history=history)


def scribble(hints: tuple[Hint, ...], width: int, height: int) -> np.ndarray:
  """The hints as an RGBA scribble, uint8 [height, width, 4]: later hints over earlier ones,
  drawn without antialiasing so that every hint pixel has its hint's exact colour."""
  image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
  draw = ImageDraw.Draw(image)
  for hint in hints:
    fill = (*hint.rgb, 255)
    if hint.is_point:
      image.putpixel(hint.path[0], fill)
      continue
    if len(hint.path) > 1:
      draw.line(hint.path, fill=fill, width=hint.width, joint="curve")
    r = (hint.width - 1) / 2
    for x, y in (hint.path[0], hint.path[-1]):
      draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
  return np.asarray(image)


def points(rgba: np.ndarray) -> list[dict]:
  """A scribble's hint pixels as pix2pix-colorize's JSON point list (the same hints)."""
  ys, xs = np.nonzero(rgba[..., 3])
  return [
    {"x": int(x), "y": int(y), "rgb": [int(v) for v in rgba[y, x, :3]]}
    for y, x in zip(ys, xs, strict=True)
  ]


def hex_of(rgb: RGB) -> str:
  return "#{:02x}{:02x}{:02x}".format(*rgb)


def rgb_of(text: str) -> RGB:
  """'#rrggbb' (or '#rgb', 'rgb(r, g, b)', 'rgba(r, g, b, a)') -> (r, g, b); ValueError else."""
  text = text.strip().lower()
  if text.startswith("rgb"):
    values = text[text.index("(") + 1 : text.rindex(")")].split(",")[:3]
    rgb = tuple(round(float(v)) for v in values)
  else:
    digits = text.lstrip("#")
    if len(digits) == 3:
      digits = "".join(d * 2 for d in digits)
    if len(digits) != 6:
      raise ValueError(f"not a colour: {text!r}")
    rgb = tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))
  if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
    raise ValueError(f"not a colour: {text!r}")
  return rgb


def _clip(v: int, n: int) -> int:
  return min(max(int(v), 0), n - 1)


def _segment_distance(x: float, y: float, a: XY, b: XY) -> float:
  (ax, ay), (bx, by) = a, b
  dx, dy = bx - ax, by - ay
  length = dx * dx + dy * dy
  t = 0.0 if length == 0 else min(1.0, max(0.0, ((x - ax) * dx + (y - ay) * dy) / length))
  return math.hypot(x - ax - t * dx, y - ay - t * dy)


@dataclasses.dataclass(frozen=True)
class Session:
  """What one browser tab has: its photo (an `engine.Photo`), hints, colour and colour
  controls, and the last result (an `engine.Rendered`)."""

  photo: object | None = None
  hints: HintState = HintState()
  colour: RGB = (200, 30, 40)
  saturation: float = 1.0
  reference: object | None = None  # color.ChromaStats of the reference photo
  reference_name: str | None = None
  rendered: object | None = None

  def replace(self, **changes) -> "Session":
    return dataclasses.replace(self, **changes)
