"""The evaluation command on a tiny trained workdir: files, baselines, gallery, errors."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers import REPO, exit_status, tiny_config
from PIL import Image
from skimage import color as skcolor

from pix2pix_jax.evaluate import main as evaluate
from pix2pix_jax.train import loop as train_loop

SIZES = [(40, 48), (32, 32), (50, 36), (64, 40), (33, 47)]  # 5 images: the last batch is padded


def _photo_folder(root):
  rng = np.random.default_rng(1)
  root.mkdir(parents=True)
  for i, (h, w) in enumerate(SIZES):
    # Smooth colour gradients plus noise: images with real chroma.
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([x, y, 1 - x], -1) * 200 + rng.integers(0, 50, (h, w, 3))
    Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(root / f"img{i}.png")
  return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A workdir trained for 2 steps, and an evaluation of it on a 5-image folder."""
  tmp = tmp_path_factory.mktemp("evaluate")
  workdir = tmp / "run"
  config = tiny_config(**{"data.source": "samples", "num_train_steps": 2})
  train_loop.train_and_evaluate(config, str(workdir))
  folder = _photo_folder(tmp / "photos")
  code = evaluate.main(["--workdir", str(workdir), "--data", str(folder), "--batch-size", "4"])
  return {"workdir": workdir, "folder": folder, "code": code, "crop": config.data.crop_size}


def _outputs(trained):
  return trained["workdir"] / "eval" / "photos"


def test_writes_the_three_files_in_the_default_folder(trained):
  assert trained["code"] == 0
  for name in ("metrics.json", "per_image.csv", "gallery.html"):
    assert (_outputs(trained) / name).stat().st_size > 0
  assert not [p for p in os.listdir(_outputs(trained)) if p.startswith(".tmp")]


def test_csv_has_one_row_per_image_with_every_predictor(trained):
  with open(_outputs(trained) / "per_image.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["file"] for r in rows] == [f"img{i}.png" for i in range(len(SIZES))]
  for predictor in evaluate.PREDICTORS:
    for metric in ("psnr", "ssim", "ciede2000", "colorfulness"):
      assert all(math.isfinite(float(r[f"{predictor}_{metric}"])) for r in rows)


def test_metrics_json_has_model_and_baselines_with_confidence_intervals(trained):
  summary = json.loads((_outputs(trained) / "metrics.json").read_text())
  assert summary["num_images"] == len(SIZES)
  assert summary["step"] == 2
  for predictor in evaluate.PREDICTORS:
    for metric in ("psnr", "ssim", "ciede2000", "colorfulness", "colorfulness_diff"):
      s = summary[predictor][metric]
      assert s["n"] == len(SIZES)
      assert s["ci95_low"] < s["mean"] < s["ci95_high"]
  assert summary["gray"]["colorfulness"]["mean"] < 0.5  # zero chroma: ~0 up to rounding
  assert math.isfinite(summary["gray"]["psnr"]["mean"])
  assert summary["mean_chroma"]["colorfulness"]["mean"] > 1.0  # the folder's mean is coloured


def _resized(path, size):
  image = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
  return np.asarray(image) / 255.0


def test_baselines_match_an_independent_skimage_computation(trained):
  """The mean chroma is the eval images' mean ab; the gray baseline is L with a = b = 0."""
  size = trained["crop"]
  images = [_resized(trained["folder"] / f"img{i}.png", size) for i in range(len(SIZES))]
  labs = [skcolor.rgb2lab(im) for im in images]
  summary = json.loads((_outputs(trained) / "metrics.json").read_text())
  expected_ab = np.mean([lab[..., 1:].mean(axis=(0, 1)) for lab in labs], axis=0)
  np.testing.assert_allclose(summary["mean_chroma_ab"], expected_ab, atol=0.3)
  with open(_outputs(trained) / "per_image.csv") as f:
    rows = list(csv.DictReader(f))
  for image, lab, row in zip(images, labs, rows, strict=True):
    gray = skcolor.lab2rgb(np.concatenate([lab[..., :1], np.zeros_like(lab[..., 1:])], -1))
    psnr = 10 * np.log10(1.0 / np.mean((gray - image) ** 2))
    assert abs(float(row["gray_psnr"]) - psnr) < 0.1


def test_gallery_is_self_contained_with_one_row_per_image(trained):
  html = (_outputs(trained) / "gallery.html").read_text()
  body = html.split("<tbody>")[1].split("</tbody>")[0]
  assert body.count("<tr>") == len(SIZES)
  assert body.count('src="data:image/jpeg;base64,') == 3 * len(SIZES)
  assert "img3.png" in body
  assert "<script>" in html and 'data-col="5"' in html  # sortable metric columns
  assert "http://" not in html and "https://" not in html


def test_max_examples_and_output_folder(trained, tmp_path):
  out = tmp_path / "out"
  args = ["--workdir", str(trained["workdir"]), "--data", str(trained["folder"])]
  assert evaluate.main(args + ["--output", str(out), "--max-examples", "2"]) == 0
  with open(out / "per_image.csv") as f:
    assert len(list(csv.DictReader(f))) == 2


def test_errors_exit_1_with_a_message_naming_the_path(trained, tmp_path, capsys):
  missing = tmp_path / "missing"
  assert exit_status(evaluate.main, ["--workdir", str(missing), "--data", "samples"]) == 1
  assert str(missing) in capsys.readouterr().err

  no_checkpoint = tmp_path / "empty_run"
  no_checkpoint.mkdir()
  assert exit_status(evaluate.main, ["--workdir", str(no_checkpoint), "--data", "samples"]) == 1
  assert str(no_checkpoint) in capsys.readouterr().err

  empty = tmp_path / "no_images"
  empty.mkdir()
  (empty / "notes.txt").write_text("not an image")
  assert (
    exit_status(evaluate.main, ["--workdir", str(trained["workdir"]), "--data", str(empty)]) == 1
  )
  err = capsys.readouterr().err
  assert err.startswith("error:") and str(empty) in err and err.count("\n") == 1

  assert (
    exit_status(evaluate.main, ["--workdir", str(trained["workdir"]), "--data", str(missing)]) == 1
  )
  assert str(missing) in capsys.readouterr().err


@pytest.mark.integration
def test_command_line_exit_code(tmp_path):
  missing = tmp_path / "nowhere"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "pix2pix_jax.evaluate.main",
      "--workdir",
      str(missing),
      "--data",
      "samples",
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
  )
  assert result.returncode == 1
  assert f"error: {missing}: workdir does not exist" in result.stderr


def test_tfds_data_with_a_split(trained, tmp_path):
  out = tmp_path / "places"
  args = ["--workdir", str(trained["workdir"]), "--data", "places365_small[validation]"]
  with tfds.testing.mock_data(num_examples=6):
    assert evaluate.main(args + ["--output", str(out), "--max-examples", "3"]) == 0
  with open(out / "per_image.csv") as f:
    assert [r["file"] for r in csv.DictReader(f)] == [f"validation[{i}]" for i in range(3)]
  summary = json.loads((out / "metrics.json").read_text())
  assert summary["data_name"] == "places365_small_validation" and summary["num_images"] == 3
