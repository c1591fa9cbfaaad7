"""The simulated user of `pix2pix-evaluate --hints N --hint-policy error`: where its points go,
the curve it writes beside random points, and that the random policy is today's --hints."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import exit_status, fill_generator_workdir, write_photo_folder
from PIL import Image

from pix2pix_jax import checkpoint, models, parallel
from pix2pix_jax.evaluate import hint_policy
from pix2pix_jax.evaluate import main as evaluate
from pix2pix_jax.hints import device as hint_ops

GRAY = (128, 128, 128)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A tiny hint generator whose colours are the luminance-aware fill of its hints."""
  return fill_generator_workdir(tmp_path_factory.mktemp("fill"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  return str(write_photo_folder(tmp_path_factory.mktemp("photos"), n=5, size=(32, 32)))


def _squares(*squares, size=32):
  """A gray uint8 image with (y0, y1, x0, x1, rgb) squares painted on it."""
  image = np.full((size, size, 3), GRAY, np.uint8)
  for y0, y1, x0, x1, rgb in squares:
    image[y0:y1, x0:x1] = rgb
  return image


def test_the_next_point_is_the_centre_of_the_largest_wrong_region():
  error = np.zeros((40, 40))
  error[2:8, 2:8] = 30.0  # small and very wrong
  error[15:35, 10:24] = 12.0  # large
  y, x = hint_policy.next_point(error)
  assert 21 <= y <= 28 and 16 <= x <= 17  # 7 px from the region's edge, its most inside
  # The same wrong region, half of it truly red and half blue (a bigger red half): with
  # colour_step its red part is the largest region of one colour.
  true_ab = np.zeros((40, 40, 2))
  true_ab[15:35, 10:18] = (60.0, 40.0)
  true_ab[15:35, 18:24] = (20.0, -60.0)
  policy = hint_policy.ErrorPolicy(colour_step=10)
  assert 10 <= hint_policy.next_point(error, None, true_ab, policy)[1] < 18
  # Once a point is there, the next goes elsewhere: the pixels near it are not wrong.
  hinted = np.zeros((40, 40), bool)
  hinted[y, x] = True
  far = hint_policy.next_point(error, hinted, None, hint_policy.ErrorPolicy(spacing=20))
  assert np.hypot(far[0] - y, far[1] - x) > 20 and error[far] > 0


def test_random_places_are_those_of_the_evaluation_sampler():
  ab = np.random.default_rng(0).uniform(-60, 60, (3, 20, 24, 2)).astype(np.float32)
  keys = hint_ops.image_keys(7, jnp.int32(5), 3)
  places = hint_policy.random_places(keys, 20, 24, 9)
  _, mask, _ = jax.device_get(hint_ops.sample_points(keys, ab, 9))
  for i in range(3):
    expected = np.zeros((20, 24), bool)
    expected[places[i, :, 0], places[i, :, 1]] = True
    np.testing.assert_array_equal(mask[i], expected)


def test_the_first_point_lands_in_the_big_red_square_and_fixes_it(workdir):
  config, variables = checkpoint.restore_generator(workdir)
  mesh = parallel.make_mesh()
  user = hint_policy.SimulatedUser(models.make_generator(config), config.color_space, mesh)
  red, blue = (200, 30, 30), (30, 60, 200)
  images = np.stack(
    [
      _squares((4, 16, 14, 26, red)),  # the only wrong region
      _squares((2, 6, 2, 6, red), (14, 30, 8, 28, blue)),  # a small and a large one
      _squares(),
      _squares(),
    ]
  )
  batch = {"image": images, "mask": np.array([True, True, False, False])}
  curve = user.curve(variables, [batch, batch], count=6, seed=1)
  assert curve.points.shape == (4, 6, 2) and curve.per_image["error"].shape == (4, 7)
  (y0, x0), (y1, x1) = curve.points[0, 0], curve.points[1, 0]
  assert 4 <= y0 < 16 and 14 <= x0 < 26
  assert 14 <= y1 < 30 and 8 <= x1 < 28
  np.testing.assert_array_equal(curve.points[:2], curve.points[2:])  # both batches the same
  error, random = curve.per_image["error"], curve.per_image["random"]
  np.testing.assert_allclose(error[:, 0], random[:, 0])  # no points: the same start
  # The first point turns the whole image its colour; the next ones put the rest right, where
  # random points mostly land on gray (measured: 3.99 -> 0.97 and 9.60 -> 1.60; random 3.98, 3.22).
  assert (error[:, -1] < 0.5 * error[:, 0]).all() and (error[:, -1] < random[:, -1]).all()
  assert user._errors._cache_size() == 1  # one compiled call for every step and batch


def _read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_error_policy_writes_the_curve_and_leaves_the_random_outputs_as_they_were(
  workdir, photos, tmp_path, capsys
):
  common = ["--workdir", workdir, "--data", photos, "--hints", "4", "--quiet"]
  assert evaluate.main([*common, "--output", str(tmp_path / "random")]) == 0
  capsys.readouterr()
  assert evaluate.main([*common, "--hint-policy", "error", "--output", str(tmp_path / "e")]) == 0
  printed = capsys.readouterr().out
  assert sorted(os.listdir(tmp_path / "random")) == [
    "gallery.html",
    "metrics.json",
    "per_image.csv",
  ]
  assert {"hint_curve.csv", "hint_curve.png"} <= set(os.listdir(tmp_path / "e"))
  random = json.load(open(tmp_path / "random" / "metrics.json"))
  error = json.load(open(tmp_path / "e" / "metrics.json"))
  assert "hint_policy" not in random and error.pop("hint_policy") == "error"
  reached = error.pop("error_points_reach_random_at")
  assert error == random  # the same metrics: the curve is beside them
  assert (
    open(tmp_path / "random" / "per_image.csv").read()
    == open(tmp_path / "e" / "per_image.csv").read()
  )

  rows = _read_csv(tmp_path / "e" / "hint_curve.csv")
  assert list(rows[0]) == ["k", "policy", "ciede2000"]
  assert [(r["policy"], int(r["k"])) for r in rows] == [
    (p, k) for p in ("random", "error") for k in range(5)
  ]
  value = {(r["policy"], int(r["k"])): float(r["ciede2000"]) for r in rows}
  # Random points: no points is the model, the first 4 of 4 are --hints 4's model_hints.
  assert value["random", 0] == pytest.approx(random["model"]["ciede2000"]["mean"], rel=1e-4)
  assert value["random", 4] == pytest.approx(random["model_hints"]["ciede2000"]["mean"], rel=1e-4)
  assert value["error", 0] == pytest.approx(value["random", 0])
  hits = [k for k in range(5) if value["error", k] <= value["random", 4]]
  assert reached == (hits[0] if hits else None)
  assert "CIEDE2000 after k points, mean of 5 images" in printed and "hint_curve.csv" in printed
  assert any(line.startswith("error points") for line in printed.splitlines())
  with Image.open(tmp_path / "e" / "hint_curve.png") as plot:
    assert plot.format == "PNG"


@pytest.mark.parametrize(
  "extra, message",
  [
    ([], "--hint-policy error needs --hints N"),
    (["--hints", "0"], "--hint-policy error needs --hints N"),
    (["--hints", "3", "--video", "clip.mp4"], "--hint-policy error is for --data"),
  ],
)
def test_error_policy_without_hints_is_a_one_line_usage_error(extra, message, photos, capsys):
  data = [] if "--video" in extra else ["--data", photos]
  argv = ["--workdir", "nowhere", *data, *extra, "--hint-policy", "error"]
  assert exit_status(evaluate.main, argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("pix2pix-evaluate: error:") and message in err[-1]
  assert not os.path.exists("nowhere")
