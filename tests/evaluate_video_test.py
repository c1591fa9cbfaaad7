"""pix2pix-evaluate --video: the clip metrics against independent references, and the command on
a real encoded colour clip (a photo panned 2 px a frame, FFV1 RGB)."""

import csv
import json
import os

import cv2
import numpy as np
import pytest
from helpers import encode_ffv1, fill_generator_workdir
from scipy.spatial import distance

from pix2pix_jax import images
from pix2pix_jax.evaluate import main as evaluate
from pix2pix_jax.evaluate import video as video_eval
from pix2pix_jax.evaluate import video_metrics

W, H, FRAMES = 96, 64, 24


def _pan(step: int = 2) -> np.ndarray:
  rgb = images.load_image(os.path.join(images.SAMPLES_DIR, "eval", "sklearn_china.jpg")).rgb
  rgb = cv2.resize(rgb, (200, 120), interpolation=cv2.INTER_AREA)
  return np.stack([rgb[30 : 30 + H, 5 + step * t : 5 + step * t + W] for t in range(FRAMES)])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  return encode_ffv1(tmp_path_factory.mktemp("clip") / "pan.mkv", _pan(), pix_fmt="bgr0")


def test_cdc_is_the_mean_jensen_shannon_divergence_of_channel_histograms():
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
  expected = []
  for k in video_metrics.CDC_STEPS:
    pairs = []
    for t in range(len(frames) - k):
      per_channel = []
      for c in range(3):
        p = np.bincount(frames[t, ..., c].ravel() // 8, minlength=32)
        q = np.bincount(frames[t + k, ..., c].ravel() // 8, minlength=32)
        per_channel.append(distance.jensenshannon(p, q) ** 2)  # natural log
      pairs.append(np.mean(per_channel))
    expected.append(np.mean(pairs))
  assert video_metrics.cdc(frames) == pytest.approx(np.mean(expected), rel=1e-9)
  assert video_metrics.cdc(np.repeat(frames[:1], 5, axis=0)) == 0.0


def test_warp_error_is_small_along_the_true_motion_and_grows_with_flicker():
  truth = _pan()
  flows = video_metrics.true_flows(truth)
  steady = video_metrics.warp_error(truth, flows)
  flicker = truth.astype(np.int32)
  flicker[1::2, ..., 0] += 40  # every other frame redder
  flicker = video_metrics.warp_error(np.clip(flicker, 0, 255).astype(np.uint8), flows)
  assert steady < 0.02 and flicker > steady + 0.04, (steady, flicker)


def test_the_command_reports_every_mode_and_method_per_frame_and_per_clip(clip, tmp_path):
  workdir = fill_generator_workdir(tmp_path / "fill")
  out = tmp_path / "eval"
  argv = ["--workdir", workdir, "--video", clip, "--hints", "12", "--output", str(out)]
  assert evaluate.main(argv + ["--keyframe-every", "12"]) == 0
  frames = list(csv.DictReader(open(out / "per_frame.csv")))
  assert len(frames) == len(video_eval.MODES) * len(video_eval.METHODS) * FRAMES
  by = {(r["mode"], r["method"], int(r["frame"])): r for r in frames}
  # Keyframes at 0 and 12: a frame's distance is to the nearer one; the oracle's is always 0.
  assert [int(by["track", "model", t]["distance"]) for t in (0, 5, 6, 7, 12, 23)] == [
    0,
    5,
    6,
    5,
    0,
    11,
  ]
  assert {int(by["oracle", "model", t]["distance"]) for t in range(FRAMES)} == {0}
  # On a keyframe every mode has the same hints: the same frame.
  for method in video_eval.METHODS:
    errors = {by[m, method, 0]["ciede2000"] for m in ("fixed", "track")}
    assert len(errors) == 1
  summary = json.loads((out / "summary.json").read_text())["mean_over_clips"]
  assert summary["truth"]["truth"]["ciede2000"] == 0.0
  # The picture moves 2 px a frame: hints carried with it beat hints left behind.
  for method in video_eval.METHODS:
    assert summary["track"][method]["ciede2000"] < summary["fixed"][method]["ciede2000"]
  assert (out / "ciede2000_distance.png").stat().st_size > 1000
  clips = list(csv.DictReader(open(out / "per_clip.csv")))
  assert {(r["mode"], r["method"]) for r in clips} == {("truth", "truth")} | {
    (m, k) for m in video_eval.MODES for k in video_eval.METHODS
  }


def test_video_needs_hints(clip, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    evaluate.main(["--workdir", str(tmp_path), "--video", clip])
  assert exit_info.value.code == 2 and "--video needs --hints N" in capsys.readouterr().err
