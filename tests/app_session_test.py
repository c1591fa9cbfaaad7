"""pix2pix-app's hint state and what it draws, without a model: edits and undo, the scribble and
point-list forms of the hints (the same hints for pix2pix-colorize), colours, the ab palette."""

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app extra is not installed (pip install -e '.[app]')")

from pix2pix_jax.app import canvas, palette, session  # noqa: E402
from pix2pix_jax.app.session import Hint, HintState  # noqa: E402
from pix2pix_jax.hints import files as hint_files  # noqa: E402

RED, BLUE = (220, 20, 30), (20, 40, 220)


def test_edits_select_move_recolour_delete_and_undo():
  s = HintState().add(Hint(((10, 5),), RED))
  s = s.add(Hint(((30, 20), (40, 20)), BLUE, width=3))
  assert [h.is_point for h in s.hints] == [True, False] and s.selected == 1
  assert s.recent == (BLUE, RED)
  assert s.hint_at(11, 6, radius=2) == 0 and s.hint_at(35, 21, radius=0) == 1
  assert s.hint_at(60, 60, radius=5) is None
  moved = s.move(0, 5, -10, width=50, height=30)
  assert moved.hints[0].path == ((15, 0),) and moved.selected == 0  # clipped to the photo
  recoloured = moved.recolour(BLUE)
  assert recoloured.hints[0].rgb == BLUE and recoloured.hints[1] == s.hints[1]
  deleted = recoloured.delete()
  assert len(deleted.hints) == 1 and deleted.selected is None
  assert deleted.undo().hints == recoloured.hints
  assert deleted.undo().undo().hints == moved.hints
  assert deleted.clear().hints == () and deleted.clear().undo().hints == deleted.hints
  assert HintState().undo() == HintState() and HintState().clear() == HintState()
  # No hint selected: a colour is only remembered.
  assert HintState().recolour(RED) == HintState(recent=(RED,))


def test_the_scribble_and_the_point_list_are_the_same_hints():
  hints = (
    Hint(((3, 4),), RED),
    Hint(((10, 10), (30, 12), (35, 25)), BLUE, width=5),
    Hint(((31, 12),), (10, 200, 10)),  # a point over the stroke wins there
  )
  rgba = session.scribble(hints, 48, 32)
  assert rgba.shape == (32, 48, 4) and rgba.dtype == np.uint8
  assert tuple(rgba[4, 3]) == (*RED, 255) and rgba[..., 3].sum() > 255 * 60
  assert tuple(rgba[12, 31, :3]) == (10, 200, 10)
  # Every hint pixel has exactly one of the hints' colours: no antialiased edges.
  colours = {tuple(c) for c in rgba[rgba[..., 3] > 0][:, :3]}
  assert colours == {RED, BLUE, (10, 200, 10)}
  assert set(np.unique(rgba[..., 3])) == {0, 255}
  listed = session.points(rgba)
  assert len(listed) == int((rgba[..., 3] > 0).sum())
  a = hint_files.as_hints(rgba, 32, 48)
  b = hint_files.as_hints(listed, 32, 48)
  np.testing.assert_array_equal(a.mask, b.mask)
  np.testing.assert_array_equal(a.ab, b.ab)


def test_colours_parse_and_print():
  assert session.rgb_of("#ff8000") == (255, 128, 0) == session.rgb_of("rgb(255, 128, 0)")
  assert session.rgb_of("#f80") == (255, 136, 0)
  assert session.rgb_of("rgba(1.2, 2, 3, 0.5)") == (1, 2, 3)
  assert session.hex_of((255, 128, 0)) == "#ff8000"
  for bad in ("", "#12345", "rgb(300, 0, 0)", "red"):
    with pytest.raises(ValueError):
      session.rgb_of(bad)


def test_the_palette_holds_only_colours_of_that_lightness():
  from pix2pix_jax import color

  mid = palette.plane(50.0)
  assert mid.shape == (palette.SIZE, palette.SIZE, 3)
  # The neutral centre exists at any L; a saturated corner does not at L = 95.
  centre = palette.pick(50.0, palette.SIZE / 2, palette.SIZE / 2)
  assert centre is not None and max(centre) - min(centre) <= 2
  assert palette.pick(95.0, 0, palette.SIZE - 1) is None
  assert (palette.plane(95.0) == 238).all(axis=-1).mean() > (mid == 238).all(axis=-1).mean()
  # A picked colour has the palette's lightness and the ab of the pixel picked.
  for lightness in (30.0, 50.0, 70.0):
    inside = (palette.plane(lightness) != 238).any(axis=-1)
    ys, xs = np.nonzero(inside)
    for i in np.linspace(0, len(xs) - 1, 7).astype(int)[1:-1]:
      x, y = int(xs[i]), int(ys[i])
      rgb = palette.pick(lightness, x, y)
      assert rgb is not None, (lightness, x, y)
      lab = np.asarray(color.rgb_to_lab(np.array(rgb, np.float32) / 255.0))
      a, b = palette.ab_at(x, y)
      assert abs(lab[0] - lightness) < 1.5 and np.hypot(lab[1] - a, lab[2] - b) < 2.5


def test_the_canvas_marks_hints_and_the_swatches_map_back():
  gray = np.full((30, 40), 128, np.uint8)
  s = HintState().add(Hint(((20, 15),), RED)).add(Hint(((2, 2), (10, 2)), BLUE, width=2))
  drawn = canvas.draw(gray, s, (80, 60))  # shown at half the photo's size
  assert tuple(drawn[7, 10]) == RED and tuple(drawn[1, 3]) == BLUE
  assert tuple(drawn[25, 35]) == (128, 128, 128)
  strip = canvas.swatches((RED, BLUE))
  assert tuple(strip[canvas.SWATCH // 2, canvas.SWATCH + 5]) == BLUE
  assert canvas.swatch_at(canvas.SWATCH + 5, (RED, BLUE)) == BLUE
  assert canvas.swatch_at(5 * canvas.SWATCH, (RED, BLUE)) is None
