"""Evaluating with colour hints: sampled hints, the nearest-hint fill, pix2pix-evaluate --hints,
and the learning check that a hint model uses its hints."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import short_training
from helpers import encode_ffv1, tiny_config, tiny_generator_workdir, write_photo_folder
from PIL import Image
from scipy.spatial import cKDTree

from pix2pix_jax import checkpoint, cli, color, input_pipeline, models, parallel
from pix2pix_jax.evaluate import common
from pix2pix_jax.evaluate import main as evaluate
from pix2pix_jax.hints import device as hint_ops


def test_sampled_hints_are_n_true_pixels_per_image_and_depend_on_the_image_index_only():
  ab = np.random.default_rng(0).uniform(-50, 50, (8, 24, 24, 2)).astype(np.float32)
  keys = hint_ops.image_keys(3, jnp.int32(0), 8)
  hint_ab, mask, fill = jax.device_get(hint_ops.sample_points(keys, ab, 5))
  for i in range(8):
    assert 1 <= mask[i].sum() <= 5  # 1x1 patches (duplicates merge)
    np.testing.assert_allclose(hint_ab[i][mask[i]], ab[i][mask[i]], atol=1e-5)
    np.testing.assert_allclose(fill[i][mask[i]], ab[i][mask[i]], atol=1e-5)
  assert np.mean([mask[i].sum() for i in range(8)]) > 4
  # Images 4..7 get the same hints in a batch of their own.
  later = jax.device_get(hint_ops.sample_points(hint_ops.image_keys(3, jnp.int32(4), 4), ab[4:], 5))
  np.testing.assert_array_equal(later[1], mask[4:])
  np.testing.assert_array_equal(later[2], fill[4:])


def test_the_nearest_hint_fill_matches_a_kd_tree():
  rng = np.random.default_rng(1)
  centres = np.stack([rng.integers(0, 20, (2, 7)), rng.integers(0, 30, (2, 7))], -1)
  point_ab = rng.uniform(-50, 50, (2, 7, 2)).astype(np.float32)
  fill = np.asarray(hint_ops.nearest_fill(point_ab, centres, 20, 30))
  yy, xx = np.mgrid[0:20, 0:30]
  pixels = np.stack([yy.ravel(), xx.ravel()], -1)
  for i in range(2):
    c, v = centres[i], point_ab[i]
    dist, _ = cKDTree(c).query(pixels)
    # The fill's colour is that of a point at the nearest distance (ties may pick either).
    got = fill[i].reshape(-1, 2)
    which = np.argmin(np.abs(got[:, None, :] - v[None]).sum(-1), axis=1)
    np.testing.assert_allclose(got, v[which], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(pixels - c[which], axis=-1), dist)
  none = hint_ops.nearest_fill(point_ab[:, :0], centres[:, :0], 20, 30)
  assert none.shape == (2, 20, 30, 2) and np.asarray(none).max() == 0 == np.asarray(none).min()


def _exit_status(argv):
  with pytest.raises(SystemExit) as exit_info:
    cli.run(evaluate.main, [str(a) for a in argv])
  return exit_info.value.code


def test_evaluate_with_hints_reports_every_metric_beside_the_baselines(tmp_path, capsys):
  config = tiny_config(**{"model.hints": True})
  workdir = str(tmp_path / "run")
  variables = models.make_generator(config).init(
    jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False
  )
  checkpoint.save_generator(workdir, config, variables, step=1)
  folder = write_photo_folder(tmp_path / "photos", n=6)
  out = {}
  for n in (0, 5):
    assert (
      evaluate.main(["--workdir", workdir, "--data", str(folder), "--hints", str(n), "--quiet"])
      == 0
    )
    path = os.path.join(workdir, "eval", f"photos_hints{n}", "metrics.json")
    out[n] = json.load(open(path))
  printed = capsys.readouterr().out
  assert "nearest_hint" in printed and "model_hints" in printed
  for n, m in out.items():
    assert m["hints"] == n and m["num_images"] == 6
    assert m["predictors"] == [
      "model",
      "model_hints",
      "gray",
      "mean_chroma",
      "nearest_hint",
      "luminance_fill",
    ]
    assert set(m["model_hints"]) == set(m["model"]) >= {"psnr", "ssim", "ciede2000"}
  # No hints: the hinted model is the model, both fills are gray.
  for metric in ("ciede2000", "psnr"):
    assert out[0]["model_hints"][metric]["mean"] == pytest.approx(out[0]["model"][metric]["mean"])
    for fill in ("nearest_hint", "luminance_fill"):
      assert out[0][fill][metric]["mean"] == pytest.approx(out[0]["gray"][metric]["mean"])
  # Random photos: 5 true pixels and their nearest fill beat gray... not necessarily; they differ.
  assert out[5]["nearest_hint"]["ciede2000"]["mean"] != out[5]["gray"]["ciede2000"]["mean"]
  header = open(os.path.join(workdir, "eval", "photos_hints5", "per_image.csv")).readline()
  assert "model_hints_ciede2000" in header and "nearest_hint_psnr" in header
  # A model without hint inputs: one line, exit 1, nothing written.
  plain = tiny_generator_workdir(tmp_path / "plain")
  assert _exit_status(["--workdir", plain, "--data", folder, "--hints", "5", "--quiet"]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "trained without colour hints" in err[0] and plain in err[0]
  assert not os.path.exists(os.path.join(plain, "eval"))


def _random_colour_folder(root, size: int = 32, seed: int = 0) -> str:
  """16 training and 4 eval images: a random lightness pattern in one random colour each (Lab
  chroma 45 at a uniform hue), so that only hints can tell an image's colour."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size] / size
  for split, count in (("train", 16), ("eval", 4)):
    os.makedirs(os.path.join(root, split))
    for i in range(count):
      fy, fx, py, px = rng.uniform(1, 3), rng.uniform(1, 3), *rng.uniform(0, 2 * np.pi, 2)
      lightness = 55 + 20 * np.sin(2 * np.pi * fx * xx + px) * np.cos(2 * np.pi * fy * yy + py)
      hue = rng.uniform(0, 2 * np.pi)
      ab = np.broadcast_to(45 * np.array([np.cos(hue), np.sin(hue)]), (size, size, 2))
      lab = np.concatenate([lightness[..., None], ab], -1).astype(np.float32)
      rgb = np.asarray(color.float_to_uint8(color.lab_to_rgb(lab)))
      Image.fromarray(rgb).save(os.path.join(root, split, f"{i}.png"))
  return str(root)


@pytest.mark.slow
def test_a_hint_model_uses_its_hints(tmp_path):
  """60 steps of a small hint U-Net (num_downs 5, widths 16; GAN + 100 L1, Adam 2e-4) on 16
  images whose colour is random (`_random_colour_folder`); on 4 held-out ones, 5 sampled hints
  must lower its CIEDE2000 by over 20% (measured 24.6 -> 14.3 with 1 hint, 14.3 with 5).
  (On real photos 60 steps are too few: the model is still learning the photos' colours.) On a
  clip panning over bands of such colours, its hints tracked must beat them fixed by 15%."""
  config = short_training.overfit_config(
    _random_colour_folder(tmp_path / "images"), **{"model.hints": True, "hint_sim.max_patch": 3}
  )
  nets, state, history = short_training.train(config, steps=60)
  assert np.isfinite(history["g_loss"]).all()
  mesh = parallel.make_mesh()
  (batch,) = list(input_pipeline.create_eval_iterator(config))
  real = parallel.to_global(batch, mesh)["image"]

  @jax.jit
  def compute(variables, real):
    keys = hint_ops.image_keys(0, jnp.int32(0), real.shape[0])
    plain = common.predict_rgb(nets.generator, nets.color_space, variables, real)
    hinted = common.hinted_predictions(
      nets.generator, nets.color_space, variables, real, keys, num_points=5
    )
    gray = common.baselines(real, jnp.zeros(2))["gray"]
    outputs = {"model": plain, "gray": gray, **hinted}
    return {k: common.image_metrics(v, real)["ciede2000"] for k, v in outputs.items()}

  ciede = {
    k: float(np.mean(v[np.asarray(batch["mask"])]))
    for k, v in jax.device_get(compute(state.generator_variables, real)).items()
  }
  assert ciede["model_hints"] < 0.8 * ciede["model"], ciede

  # The same model on a clip panning 2 px a frame over bands of other colours: 12 hints on the
  # first frame carried with the picture beat the same hints left where they were.
  workdir = str(tmp_path / "trained")
  checkpoint.save_generator(workdir, config, jax.device_get(state.generator_variables))
  out = tmp_path / "pan_eval"
  argv = ["--workdir", workdir, "--video", _panning_bands(tmp_path / "pan.mkv"), "--hints", "12"]
  assert evaluate.main(argv + ["--hint-motion", "all", "--output", str(out), "--quiet"]) == 0
  summary = json.loads((out / "summary.json").read_text())["mean_over_clips"]
  moved, fixed = (summary[mode]["model"]["ciede2000"] for mode in ("track", "fixed"))
  assert moved < 0.85 * fixed, (moved, fixed)


def _panning_bands(path, width=96, height=64, frames=24) -> str:
  """An FFV1 clip panning 2 px a frame over 5 vertical bands, each a lightness pattern in one
  colour (as `_random_colour_folder`'s images), the bands' hues 72 degrees apart."""
  yy, xx = np.mgrid[0:height, 0 : width + 2 * frames] / 32
  lightness = 55 + 20 * np.sin(2 * np.pi * 1.7 * xx) * np.cos(2 * np.pi * 1.3 * yy)
  hue = 2 * np.pi / 5 * np.minimum(xx * 32 // 30, 4)
  lab = np.stack([lightness, 45 * np.cos(hue), 45 * np.sin(hue)], -1).astype(np.float32)
  rgb = np.asarray(color.float_to_uint8(color.lab_to_rgb(lab)))
  clip = np.stack([rgb[:, 2 * t : 2 * t + width] for t in range(frames)])
  return encode_ffv1(path, clip, pix_fmt="bgr0")
