"""Keyframe hints on clips end to end: the first pass (cuts, tracks), serial and chunked runs,
windows, --hints DIR per input, pix2pix-keyframes and bad keyframe files. Real encoded clips (a
photo panned 1 px a frame, FFV1, then a cut to another photo), lossless outputs."""

import json
import os

import cv2
import numpy as np
import pytest
from helpers import decode, encode_ffv1, fill_generator_workdir, hint_generator_workdir
from PIL import Image

from pix2pix_jax import cli, color, images
from pix2pix_jax.colorize import hint_inputs, keyframes_main
from pix2pix_jax.colorize import main as colorize
from pix2pix_jax.colorize.jobs import Job
from pix2pix_jax.colorize.video import hint_track, probe
from pix2pix_jax.hints import keyframes

W, H, SHOT, FPS = 96, 64, 20, 25  # two shots of SHOT frames
LOSSLESS = ["--codec", "ffv1", "--pix-fmt", "gbrp"]
RED = (230, 20, 20, 255)
BOX = (slice(20, 30), slice(40, 50))  # the scribble on frame 0 (rows, columns)


def _panned(name: str, y: int) -> np.ndarray:
  """SHOT colour frames of a sample photo seen through a window that moves 1 px right a frame:
  the content moves 1 px left a frame."""
  rgb = images.load_image(os.path.join(images.SAMPLES_DIR, "eval", name)).rgb
  rgb = cv2.resize(rgb, (200, 120), interpolation=cv2.INTER_AREA)
  return np.stack([rgb[y : y + H, 10 + t : 10 + t + W] for t in range(SHOT)])


def _gray(frames: np.ndarray) -> np.ndarray:
  gray = np.rint(frames @ np.array([0.3, 0.59, 0.11])).astype(np.uint8)
  return np.repeat(gray[..., None], 3, -1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  """Two shots, gray: the cat panned, then a temple panned; a keyframe file whose frame 0 has a
  red scribble on the cat; `truth.json`: frame 0's true colours as a `colour` keyframe."""
  folder = tmp_path_factory.mktemp("clip")
  truth = np.concatenate(
    [_panned("skimage_chelsea.jpg", 18), _panned("sklearn_china.jpg", 30)], axis=0
  )
  path = encode_ffv1(folder / "pan.mkv", _gray(truth), rate=FPS)
  np.save(folder / "truth.npy", truth)
  Image.fromarray(truth[0]).save(folder / "truth0.png")
  (folder / "truth.json").write_text(
    json.dumps({"keyframes": [{"frame": 0, "colour": "truth0.png"}]})
  )
  scribble = np.zeros((H, W, 4), np.uint8)
  scribble[BOX] = RED
  Image.fromarray(scribble, "RGBA").save(folder / "s0.png")
  (folder / "keys.json").write_text(json.dumps({"keyframes": [{"frame": 0, "scribble": "s0.png"}]}))
  return folder, path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return hint_generator_workdir(tmp_path_factory.mktemp("hinted"))


@pytest.fixture(scope="module")
def fill_workdir(tmp_path_factory):
  return fill_generator_workdir(tmp_path_factory.mktemp("fill"))


def _run(workdir, src, dst, *extra) -> int:
  argv = ["--workdir", workdir, src, "-o", dst, "--quiet", "--smoothing", "0", *LOSSLESS]
  return colorize.main([str(a) for a in argv + list(extra)])


def test_the_first_pass_moves_hints_through_their_shot_and_stops_at_the_cut(clip):
  folder, path = clip
  info = probe.probe(path)
  keys = hint_track.load_keyframes(str(folder / "keys.json"), path, info)
  track = hint_track.first_pass(path, info, keys, cut_threshold=0.3, progress=False)
  assert track.frames == 2 * SHOT and track.first == 0
  start_yx, _ = track.points(0)
  assert len(start_yx) == 100  # the 10x10 scribble
  for t in (1, 9, SHOT - 1):
    found = track.points(t)
    assert found is not None and len(found[0]) > 50, t
    yx = found[0]
    # Each kept pixel is where its content went: t pixels to the left (within one pixel).
    assert np.abs(yx[:, 0] - 25).max() <= 6 and yx[:, 0].min() >= 19, t
    assert np.abs(yx[:, 1].mean() - (44.5 - t)) <= 1.0, (t, yx[:, 1].mean())
  assert all(track.points(t) is None for t in range(SHOT, 2 * SHOT))  # not past the cut
  still = hint_track.first_pass(path, info, keys, motion="fixed", cut_threshold=0.3, progress=False)
  np.testing.assert_array_equal(still.points(SHOT - 1)[0], start_yx)
  assert still.points(SHOT) is None


def _ab_error(frames: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """Per frame, the mean distance in the ab plane (Lab units) between frames and the truth."""
  lab = [np.asarray(color.rgb_to_lab(color.uint8_to_float(x)))[..., 1:] for x in (frames, truth)]
  return np.linalg.norm(lab[0] - lab[1], axis=-1).mean(axis=(1, 2))


def test_tracked_hints_are_equal_serial_and_chunked_and_nearer_the_truth(
  clip, fill_workdir, tmp_path
):
  """Frame 0's true colours as hints (a `colour` keyframe): carried through the pan, the
  colours stay nearer the truth than hints left where they were; serial == chunked."""
  folder, path = clip
  keys, truth = folder / "truth.json", np.load(folder / "truth.npy")
  serial, chunked, fixed = tmp_path / "serial.mkv", tmp_path / "chunked.mkv", tmp_path / "fixed.mkv"
  assert _run(fill_workdir, path, serial, "--hints", keys, "--workers", "1") == 0
  chunks = ["--workers", "2", "--chunk-seconds", "0.3"]
  assert _run(fill_workdir, path, chunked, "--hints", keys, *chunks) == 0
  fixed_run = ["--hints", keys, "--hint-motion", "fixed", "--workers", "1"]
  assert _run(fill_workdir, path, fixed, *fixed_run) == 0
  a, b, f = (decode(str(p)) for p in (serial, chunked, fixed))
  assert a.shape == (2 * SHOT, H, W, 3)
  np.testing.assert_array_equal(a, b)  # chunked == serial, lossless
  np.testing.assert_array_equal(a[0], f[0])  # the keyframe itself: the same hints
  tracked, left = _ab_error(a[:SHOT], truth[:SHOT]), _ab_error(f[:SHOT], truth[:SHOT])
  assert tracked[10:].mean() < 0.85 * left[10:].mean(), (tracked, left)
  # After the cut neither has hints from frame 0: the same frames.
  np.testing.assert_array_equal(a[SHOT:], f[SHOT:])


def test_a_window_takes_the_whole_clips_frame_indices(clip, workdir, tmp_path):
  folder, path = clip
  keys = folder / "keys.json"
  whole, part = tmp_path / "whole.mkv", tmp_path / "part.mkv"
  assert _run(workdir, path, whole, "--hints", keys, "--workers", "1") == 0
  assert _run(workdir, path, part, "--hints", keys, "--start", "0.4", "--duration", "0.4") == 0
  np.testing.assert_array_equal(decode(str(part)), decode(str(whole))[10:20])


def test_the_resume_fingerprint_covers_the_keyframe_files_content(clip, tmp_path):
  folder, path = clip
  info = probe.probe(path)
  (tmp_path / "keys.json").write_text((folder / "keys.json").read_text())
  scribble = np.asarray(Image.open(folder / "s0.png"))
  Image.fromarray(scribble).save(tmp_path / "s0.png")

  def digest():
    keys = hint_track.load_keyframes(str(tmp_path / "keys.json"), path, info)
    return hint_track.digest(keys, "track", 0.3)

  first = digest()
  assert digest() == first
  Image.fromarray(scribble[:, ::-1].copy()).save(tmp_path / "s0.png")  # same file name
  assert digest() != first
  assert (
    hint_track.digest(
      hint_track.load_keyframes(str(folder / "keys.json"), path, info), "fixed", 0.3
    )
    != first
  )


def test_hints_dir_gives_each_input_its_own_file(clip, workdir, tmp_path, capsys):
  folder, path = clip
  inputs = tmp_path / "in"
  inputs.mkdir()
  frame = decode(path)[0]
  for name in ("a", "b"):
    Image.fromarray(frame).save(inputs / f"{name}.png")
  os.link(path, inputs / "film.mkv")
  hints = tmp_path / "hints"
  hints.mkdir()
  Image.open(folder / "s0.png").save(hints / "a.png")
  (hints / "s0.png").write_bytes((folder / "s0.png").read_bytes())
  (hints / "film.json").write_text((folder / "keys.json").read_text())
  out, plain = tmp_path / "out", tmp_path / "plain"
  assert _run(workdir, inputs, out, "--hints", hints) == 0
  assert "1 without hints" in capsys.readouterr().out
  assert _run(workdir, inputs, plain) == 0
  a, b = (np.asarray(Image.open(out / f"{n}.png")).astype(int) for n in "ab")
  a0, b0 = (np.asarray(Image.open(plain / f"{n}.png")).astype(int) for n in "ab")
  assert np.abs(a - a0).mean() > 2  # hinted
  np.testing.assert_array_equal(b, b0)  # none of its own: no hints
  assert (
    np.abs(
      decode(str(out / "film.mkv"))[:5].astype(int) - decode(str(plain / "film.mkv"))[:5]
    ).mean()
    > 2
  )
  # A folder of frame-named scribbles is one clip's keyframes, not a folder per input.
  scribbles = tmp_path / "scribbles"
  scribbles.mkdir()
  (scribbles / "000000.png").write_bytes((folder / "s0.png").read_bytes())
  jobs = [Job(str(path), "x.mkv")]
  assert hint_inputs.assign(jobs, str(scribbles)) == 0 and jobs[0].hints == str(scribbles)
  # A shard's inputs read the folder as the whole command's do.
  every = [Job("x/000000.mkv", "0.mkv"), Job("x/other.mkv", "1.mkv")]
  assert hint_inputs.assign(every[1:], str(scribbles), every) == 1 and every[1].hints is None
  jobs = [Job("x/a.png", "a.png"), Job("x/a.jpg", "a2.png")]
  Image.open(folder / "s0.png").save(scribbles / "a.png")
  os.mkdir(scribbles / "a")
  assert hint_inputs.assign(jobs, str(scribbles)) == 0
  assert "scribbles: a and a.png both give hints for x/a.png" in jobs[0].error


@pytest.mark.parametrize(
  "case",
  ["past the end", "scribble size", "unreadable image", "unknown key", "folder name", "time"],
)
def test_bad_keyframe_files_are_one_line_exit_1_and_write_nothing(
  case, clip, workdir, tmp_path, capsys
):
  folder, path = clip
  Image.fromarray(np.zeros((10, 10, 4), np.uint8)).save(tmp_path / "small.png")
  (tmp_path / "junk.png").write_bytes(b"not a png")
  (tmp_path / "s0.png").write_bytes((folder / "s0.png").read_bytes())
  entries = {
    "past the end": (
      {"frame": 40, "scribble": "s0.png"},
      "frame 40 is past the end of the clip (40 frames",
    ),
    "scribble size": ({"frame": 0, "scribble": "small.png"}, "hint image is 10x10"),
    "unreadable image": ({"frame": 0, "colour": "junk.png"}, "junk.png"),
    "unknown key": ({"frame": 0, "scribble": "s0.png", "colour ": "x"}, 'unknown key "colour "'),
    "time": ({"time": "00:00:01.600", "scribble": "s0.png"}, "past the end of the clip"),
  }
  if case == "folder name":
    hints = tmp_path / "frames"
    hints.mkdir()
    (hints / "000001.png").write_bytes((folder / "s0.png").read_bytes())
    (hints / "first.png").write_bytes((folder / "s0.png").read_bytes())
    cause = "first.png is not named by a frame index"
  else:
    entry, cause = entries[case]
    hints = tmp_path / "keys.json"
    hints.write_text(json.dumps({"keyframes": [entry]}))
  out = tmp_path / "out.mkv"
  argv = ["--workdir", workdir, path, "-o", out, "--hints", hints, "--quiet"]
  with pytest.raises(SystemExit) as exit_info:
    cli.run(colorize.main, [str(a) for a in argv])
  assert exit_info.value.code == 1
  err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
  assert len(err) == 1 and cause in err[0] and str(hints) in err[0], err
  assert not out.exists() and sorted(os.listdir(tmp_path)) == sorted(
    n for n in os.listdir(tmp_path) if not n.startswith(".") and n != "out.mkv"
  )


def test_keyframes_command_writes_each_shots_first_frame_to_paint_on(
  clip, workdir, tmp_path, capsys
):
  _, path = clip
  out = tmp_path / "paint"
  assert keyframes_main.main([path, "-o", str(out), "--quiet"]) == 0
  listed = json.loads((out / "keyframes.json").read_text())["keyframes"]
  assert listed == [
    {"frame": 0, "painted": "000000.png"},
    {"frame": SHOT, "painted": f"{SHOT:06d}.png"},
  ]
  frames = decode(path)
  np.testing.assert_array_equal(np.asarray(Image.open(out / "000000.png")), frames[0])
  every = tmp_path / "every"
  assert keyframes_main.main([path, "-o", str(every), "--every", "0.4", "--quiet"]) == 0
  assert sorted(os.listdir(every)) == [f"{i:06d}.png" for i in (0, 10, 20, 30)] + ["keyframes.json"]
  # A second run into the same folder is refused; nothing of the first changes.
  with pytest.raises(Exception, match="folder exists and is not empty"):
    keyframes_main.main([path, "-o", str(out), "--quiet"])
  # Paint on the first: its coloured pixels are the keyframe's hints; the unpainted one has none.
  painted = np.asarray(Image.open(out / "000000.png")).copy()
  painted[BOX] = RED[:3]
  Image.fromarray(painted).save(out / "000000.png")
  keys = keyframes.load(out / "keyframes.json", frames=2 * SHOT, fps=FPS, height=H, width=W)
  expected = np.zeros((H, W), bool)
  expected[BOX] = True
  np.testing.assert_array_equal(keys[0].hints.mask, expected)
  assert not keys[1].hints.mask.any()
  assert _run(workdir, path, tmp_path / "o.mkv", "--hints", out / "keyframes.json") == 0
