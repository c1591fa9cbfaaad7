"""The photo tab's edits: each takes the Engine, a Session and what the user did, and returns the
new Session (its result refreshed when the hints or colour controls changed). The page calls
these; so do the benchmark and the tests. Bad input raises errors.UserError (one line).
"""

import json
import os
import shlex

import numpy as np

from pix2pix_jax import hints as hints_lib
from pix2pix_jax.app import engine as engine_lib
from pix2pix_jax.app import palette, session
from pix2pix_jax.app.session import Hint, Session

# A click this close (in display pixels) to a hint selects it rather than putting a new point.
PICK_RADIUS = 9
# A pointer that moves less than this (display pixels) between press and release is a click.
DRAG_THRESHOLD = 3


def open_photo(engine: engine_lib.Engine, s: Session, path: str, name: str | None = None):
  """A new photo: its hints start empty; the colour controls and recent colours stay."""
  photo = engine.load(path, name)
  hints = session.HintState(recent=s.hints.recent)
  return refresh(engine, s.replace(photo=photo, hints=hints))


def refresh(engine: engine_lib.Engine, s: Session) -> Session:
  """The result for the session's photo, hints and colour controls."""
  photo = _photo(s)
  rgba = None
  if s.hints.hints:
    rgba = session.scribble(s.hints.hints, *photo.size)
  rendered = engine.render(photo, rgba, saturation=s.saturation, reference=s.reference)
  return s.replace(rendered=rendered)


def click(engine: engine_lib.Engine, s: Session, x: float, y: float, display: tuple[int, int]):
  """A click at (x, y) on the canvas shown at `display` (width, height): selects the hint
  there, else puts a point of the current colour."""
  _check_hints(engine)
  photo = _photo(s)
  px, py, scale = _to_photo(photo, x, y, display)
  index = s.hints.hint_at(px, py, PICK_RADIUS * scale)
  if index is not None:
    hint = s.hints.hints[index]
    return s.replace(hints=s.hints.select(index), colour=hint.rgb)
  hints = s.hints.add(Hint(((px, py),), s.colour))
  return refresh(engine, s.replace(hints=hints))


def gesture(engine: engine_lib.Engine, s: Session, data: str, width: int = 8) -> Session:
  """A pointer gesture from the canvas, JSON `{"path": [[x, y], ...], "size": [w, h]}` in the
  shown image's pixels (`size` left out: the photo's). A drag that starts on a hint moves it;
  any other drag paints a stroke `width` photo pixels wide; a press without a drag is a click."""
  _check_hints(engine)
  photo = _photo(s)
  try:
    given = json.loads(data)
    path = [(float(x), float(y)) for x, y in given["path"]]
    display = tuple(int(v) for v in given.get("size", photo.size))
  except (ValueError, TypeError, KeyError) as e:
    raise hints_lib.HintsError(f"gesture: not {{'path': [[x, y], ...]}} ({e})") from e
  if not path or len(display) != 2 or min(display) <= 0:
    raise hints_lib.HintsError("gesture: an empty path")
  (x0, y0), (x1, y1) = path[0], path[-1]
  spread = max(np.hypot(x - x0, y - y0) for x, y in path)
  if spread < DRAG_THRESHOLD:
    return click(engine, s, x0, y0, display)
  start = _to_photo(photo, x0, y0, display)
  end = _to_photo(photo, x1, y1, display)
  index = s.hints.hint_at(start[0], start[1], PICK_RADIUS * start[2])
  if index is not None:
    hints = s.hints.move(index, end[0] - start[0], end[1] - start[1], *photo.size)
    return refresh(engine, s.replace(hints=hints))
  points = [_to_photo(photo, x, y, display)[:2] for x, y in path]
  points = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
  hint = Hint(tuple(points), s.colour, max(1, int(width)))
  return refresh(engine, s.replace(hints=s.hints.add(hint)))


def set_colour(engine: engine_lib.Engine, s: Session, rgb: session.RGB) -> Session:
  """The current colour; the selected hint takes it."""
  s = s.replace(colour=rgb)
  if s.photo is None or s.hints.selected is None or not engine.takes_hints:
    return s.replace(hints=s.hints.used(rgb))
  return refresh(engine, s.replace(hints=s.hints.recolour(rgb)))


def palette_lightness(s: Session) -> float:
  """The lightness the palette shows: the selected hint's pixel's (else mid-gray's)."""
  hint = s.hints.selected_hint
  if s.photo is None or hint is None:
    return 50.0
  x, y = hint.path[0]
  return float(s.photo.lab_l[y, x])


def pick_palette(engine: engine_lib.Engine, s: Session, x: float, y: float) -> Session:
  """A click on the palette: its colour, if it exists at the palette's lightness."""
  rgb = palette.pick(palette_lightness(s), x, y)
  if rgb is None:
    return s
  return set_colour(engine, s, rgb)


def model_colour(engine: engine_lib.Engine, s: Session) -> Session:
  """The result's colour under the selected hint (its first pixel)."""
  hint = s.hints.selected_hint
  if hint is None or s.rendered is None:
    return s
  photo = s.photo
  x, y = hint.path[0]
  (pw, ph), (w, h) = photo.preview_size, photo.size
  rgb = s.rendered.preview[min(ph - 1, y * ph // h), min(pw - 1, x * pw // w)]
  return set_colour(engine, s, tuple(int(v) for v in rgb))


def select(s: Session, index: int | None) -> Session:
  hints = s.hints.select(index)
  hint = hints.selected_hint
  return s.replace(hints=hints, colour=s.colour if hint is None else hint.rgb)


def delete(engine: engine_lib.Engine, s: Session) -> Session:
  return _edited(engine, s, s.hints.delete())


def undo(engine: engine_lib.Engine, s: Session) -> Session:
  return _edited(engine, s, s.hints.undo())


def clear(engine: engine_lib.Engine, s: Session) -> Session:
  return _edited(engine, s, s.hints.clear())


def set_saturation(engine: engine_lib.Engine, s: Session, saturation: float) -> Session:
  """Recomposes only: the generator's output does not depend on it."""
  s = s.replace(saturation=float(saturation))
  if s.rendered is None:
    return s
  preview = engine.compose(s.photo, s.rendered.ab, saturation=s.saturation, reference=s.reference)
  return s.replace(rendered=engine_lib.Rendered(s.rendered.ab, preview, s.rendered.seconds))


def set_reference(engine: engine_lib.Engine, s: Session, path: str | None, name: str | None = None):
  """A reference photo whose colour statistics the result moves toward (None: none)."""
  if path is None:
    s = s.replace(reference=None, reference_name=None)
  else:
    stats = engine_lib.load_reference(path, name)
    s = s.replace(reference=stats, reference_name=name or os.path.basename(path))
  return s if s.photo is None else refresh(engine, s)


def save(engine: engine_lib.Engine, s: Session, folder: str) -> tuple[list[str], str]:
  """Writes the full-size result, and the hints as a scribble PNG and a JSON point list, into
  `folder`; returns their paths and the pix2pix-colorize command that makes the same result."""
  photo = _photo(s)
  os.makedirs(folder, exist_ok=True)
  stem = os.path.splitext(photo.name)[0] or "photo"
  result = os.path.join(folder, f"{stem}_color.png")
  engine.save_result(result, photo, s.rendered.ab, saturation=s.saturation, reference=s.reference)
  paths = [result]
  flags = []
  if engine.takes_hints:
    rgba = session.scribble(s.hints.hints, *photo.size)
    png, points = (os.path.join(folder, f"{stem}_hints.{ext}") for ext in ("png", "json"))
    from PIL import Image  # noqa: PLC0415

    Image.fromarray(rgba, "RGBA").save(png)
    with open(points, "w", encoding="utf-8") as f:
      json.dump(session.points(rgba), f)
    paths += [png, points]
    flags += ["--hints", os.path.basename(png)]
  if s.saturation != 1.0:
    flags += ["--saturation", f"{s.saturation:g}"]
  if s.reference_name:
    flags += ["--reference", s.reference_name]
  words = ["pix2pix-colorize", *engine.model_flags, photo.name, *flags]
  command = shlex.join([*words, "-o", os.path.basename(result)])
  return paths, command


def _edited(engine: engine_lib.Engine, s: Session, hints: session.HintState) -> Session:
  if hints is s.hints:
    return s
  return refresh(engine, s.replace(hints=hints))


def _photo(s: Session):
  if s.photo is None:
    raise hints_lib.HintsError("no photo yet: upload one or pick a sample")
  return s.photo


def _check_hints(engine: engine_lib.Engine) -> None:
  engine.colorizer.check_takes_hints("the page's model")


def _to_photo(photo, x: float, y: float, display: tuple[int, int]) -> tuple[int, int, float]:
  """Canvas pixel (x, y) at `display` size -> (photo x, photo y, photo pixels per canvas
  pixel)."""
  width, height = photo.size
  scale = width / display[0]
  px = min(max(int(x * scale), 0), width - 1)
  py = min(max(int(y * height / display[1]), 0), height - 1)
  return px, py, scale
