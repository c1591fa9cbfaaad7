"""pix2pix-app's edits on a tiny hint model (what the page calls): clicks, strokes, moves, undo,
colours, saturation and a reference; the saved result is what pix2pix-colorize makes of the
saved hint files, bit for bit; bad photos are one-line messages; a model without hints."""

import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app extra is not installed (pip install -e '.[app]')")

from helpers import (  # noqa: E402
  app_engine,
  gradient_photo,
  hint_generator_workdir,
  start_process,
  tiny_generator_workdir,
)
from PIL import Image  # noqa: E402

from pix2pix_jax import color, errors, hints  # noqa: E402
from pix2pix_jax.app import actions, page, palette, session  # noqa: E402
from pix2pix_jax.app import engine as engine_lib  # noqa: E402
from pix2pix_jax.colorize import colorizer as colorizer_lib  # noqa: E402

W, H = 160, 120
RED, BLUE = (220, 20, 20), (20, 40, 220)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return hint_generator_workdir(tmp_path_factory.mktemp("hinted"))


@pytest.fixture(scope="module")
def engine(workdir):
  return app_engine(workdir)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
  return gradient_photo(tmp_path_factory.mktemp("photo"), W, H)


def _ab(rgb, x, y, r=3):
  lab = np.asarray(color.rgb_to_lab(rgb[y - r : y + r + 1, x - r : x + r + 1] / 255.0))
  return lab[..., 1].mean(), lab[..., 2].mean()


def _colorize(workdir, *argv):
  """pix2pix-colorize as the page's command runs it (one image a call), in a new process."""
  cmd = [sys.executable, "-m", "pix2pix_jax.colorize.main", "--workdir", workdir, "--quiet"]
  cmd += ["--batch-size", "1"]
  proc = start_process([*cmd, *map(str, argv)])
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err


def test_clicks_colour_the_result_and_the_command_makes_the_saved_result(
  engine, workdir, photo, tmp_path
):
  s = actions.open_photo(engine, session.Session(colour=RED), photo)
  assert s.rendered.preview.shape == (H, W, 3) and not s.hints.hints
  s = actions.click(engine, s, 30, 60, s.photo.display_size)
  s = actions.set_colour(engine, s.replace(hints=s.hints.select(None)), BLUE)
  s = actions.click(engine, s, 130, 60, s.photo.display_size)
  assert [h.path for h in s.hints.hints] == [((30, 60),), ((130, 60),)]
  assert [h.rgb for h in s.hints.hints] == [RED, BLUE]
  (a_red, _), (a_blue, b_blue) = _ab(s.rendered.preview, 30, 60), _ab(s.rendered.preview, 130, 60)
  assert a_red > 30 and a_red > a_blue + 30 and b_blue < -10, (a_red, a_blue, b_blue)
  # Saturation recomposes the same chroma; the saved result and hint files reproduce it.
  s = actions.set_saturation(engine, s, 1.3)
  paths, command = actions.save(engine, s, str(tmp_path / "saved"))
  result, png, points = paths
  assert [os.path.basename(p) for p in paths] == [
    "photo_color.png",
    "photo_hints.png",
    "photo_hints.json",
  ]
  assert "--hints photo_hints.png --saturation 1.3 -o photo_color.png" in command
  assert json.load(open(points)) == [
    {"x": 30, "y": 60, "rgb": list(RED)},
    {"x": 130, "y": 60, "rgb": list(BLUE)},
  ]
  saved = np.asarray(Image.open(result))
  np.testing.assert_array_equal(saved, s.rendered.preview)  # a small photo: the preview is full
  for hint_file in (png, points):
    out = tmp_path / f"cli_{os.path.basename(hint_file)}.png"
    _colorize(workdir, photo, "--hints", hint_file, "--saturation", "1.3", "-o", out)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), saved)


def test_strokes_moves_colours_and_undo(engine, photo):
  s = actions.open_photo(engine, session.Session(colour=RED), photo)
  plain = s.rendered.preview
  drag = json.dumps({"path": [[20, 20], [60, 22], [90, 30]], "size": [W * 2, H * 2]})
  s = actions.gesture(engine, s, drag, width=4)
  (stroke,) = s.hints.hints
  assert stroke.path == ((10, 10), (30, 11), (45, 15)) and stroke.width == 4
  assert not stroke.is_point and np.abs(s.rendered.preview.astype(int) - plain).mean() > 2
  stroked = s.rendered.preview
  # A press without a drag is a click; a click on a hint selects it (and takes its colour).
  s = actions.gesture(engine, s, json.dumps({"path": [[150, 100], [151, 100]]}), width=4)
  assert len(s.hints.hints) == 2 and s.hints.hints[1].path == ((150, 100),)
  s = actions.set_colour(engine, s.replace(hints=s.hints.select(None)), BLUE)
  s = actions.click(engine, s, 31, 11, s.photo.display_size)
  assert s.hints.selected == 0 and s.colour == RED and len(s.hints.hints) == 2
  # A drag from a point moves it; the model's colour there and a palette pick recolour it.
  s = actions.gesture(engine, s, json.dumps({"path": [[150, 100], [100, 90], [80, 70]]}))
  assert s.hints.hints[1].path == ((80, 70),) and s.hints.selected == 1
  before = s.rendered.preview
  s = actions.model_colour(engine, s)
  assert s.hints.hints[1].rgb == tuple(int(v) for v in before[70, 80])
  before = s.rendered.preview
  lightness = actions.palette_lightness(s)
  assert abs(lightness - float(s.photo.lab_l[70, 80])) < 1e-4
  plane = palette.plane(lightness)
  inside = (plane != 238).any(-1) & (plane != 128).any(-1)  # in gamut, off the axes
  ys, xs = np.nonzero(inside & (np.arange(palette.SIZE)[:, None] > palette.SIZE * 0.65))
  s = actions.pick_palette(engine, s, xs[len(xs) // 2], ys[len(ys) // 2])  # b < 0: blue
  assert s.hints.hints[1].rgb[2] > s.hints.hints[1].rgb[0]
  assert np.abs(s.rendered.preview.astype(int) - before).mean() > 0.5
  # Undo steps back through the edits, each with its own result again.
  while len(s.hints.hints) > 1:
    s = actions.undo(engine, s)
  assert s.hints.hints == (stroke,)
  np.testing.assert_array_equal(s.rendered.preview, stroked)
  s = actions.clear(engine, s)
  np.testing.assert_array_equal(s.rendered.preview, plain)
  with pytest.raises(hints.HintsError, match="gesture"):
    actions.gesture(engine, s, "not json")


def test_bad_photos_are_one_line_messages_naming_the_file(engine, tmp_path):
  text = tmp_path / "notes.png"
  text.write_text("not an image")
  with pytest.raises(errors.UserError, match=r"^holiday\.png: not a readable image") as info:
    actions.open_photo(engine, session.Session(), str(text), "holiday.png")
  assert "\n" not in str(info.value) and str(tmp_path) not in str(info.value)
  huge = tmp_path / "huge.png"
  Image.new("1", (10_000, 10_000)).save(huge)  # 100 megapixels, a few kB: never decoded
  with pytest.raises(errors.UserError, match=r"huge\.png: 10000x10000 is 100 megapixels, above"):
    actions.open_photo(engine, session.Session(), str(huge))
  with pytest.raises(errors.UserError, match="no photo yet"):
    actions.click(engine, session.Session(), 1, 1, (10, 10))


def test_a_model_without_hints_gives_automatic_colours_with_the_controls(photo, tmp_path):
  workdir = tiny_generator_workdir(tmp_path / "plain")
  colorizer = colorizer_lib.Colorizer.from_workdir(workdir, batch_size=1)
  engine = engine_lib.Engine(colorizer, model_flags=("--workdir", workdir, "--batch-size", "1"))
  assert not engine.takes_hints and "trained without colour hints" in engine.hints_off_reason
  s = actions.open_photo(engine, session.Session(), photo)
  with pytest.raises(hints.HintsError, match="trained without colour hints"):
    actions.click(engine, s, 10, 10, s.photo.display_size)
  reference = tmp_path / "sunset.png"
  rng = np.random.default_rng(0)
  sunset = np.stack([rng.integers(150, 255, (40, 60)), rng.integers(40, 120, (40, 60))], -1)
  Image.fromarray(np.concatenate([sunset, sunset[..., 1:] // 2], -1).astype(np.uint8)).save(
    reference
  )
  s = actions.set_reference(engine, s, str(reference))
  s = actions.set_saturation(engine, s, 0.5)
  paths, command = actions.save(engine, s, str(tmp_path / "saved"))
  assert len(paths) == 1 and "--reference sunset.png" in command and "--hints" not in command
  out = tmp_path / "cli.png"
  _colorize(workdir, photo, "--reference", reference, "--saturation", "0.5", "-o", out)
  np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(paths[0])))
  gray = tmp_path / "gray.png"
  Image.fromarray(np.full((8, 8), 90, np.uint8)).save(gray)
  with pytest.raises(errors.UserError, match=r"^gray\.png: reference image has no colour"):
    actions.set_reference(engine, s, str(gray))
  # The page shows the hint tools off, with the reason.
  demo = page.build(engine, str(tmp_path / "sessions"))
  texts = [b.value for b in demo.blocks.values() if type(b).__name__ == "Markdown"]
  assert any("Hint tools are off" in str(t) for t in texts)
  pickers = [b for b in demo.blocks.values() if type(b).__name__ == "ColorPicker"]
  assert pickers and not pickers[0].interactive
