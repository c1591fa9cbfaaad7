"""pix2pix-app's clip tab on a tiny hint model (what the page calls): a two-shot clip's shots, a
frame of each hinted as a keyframe, the preview with the hints moving through the shot, and the
colourised clip equal, frame for frame, to pix2pix-colorize given the downloaded keyframe file;
a model without hints; files that are not clips."""

import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app extra is not installed (pip install -e '.[app]')")

import cv2  # noqa: E402
from helpers import (  # noqa: E402
  app_engine,
  decode,
  encode_ffv1,
  hint_generator_workdir,
  start_process,
  tiny_generator_workdir,
)

from pix2pix_jax import color, errors, hints, images  # noqa: E402
from pix2pix_jax.app import actions, clip_actions, session  # noqa: E402
from pix2pix_jax.app import engine as engine_lib  # noqa: E402
from pix2pix_jax.app.clip_actions import ClipState  # noqa: E402
from pix2pix_jax.colorize import colorizer as colorizer_lib  # noqa: E402

W, H, SHOT, FPS = 96, 64, 12, 25  # two shots of SHOT frames
RED = (220, 20, 20)


def two_shot_clip(path) -> str:
  """A gray FFV1 clip at `path`: a sample photo panned 1 px a frame, then a cut to another."""
  shots = []
  for name, y in (("skimage_chelsea.jpg", 18), ("sklearn_china.jpg", 30)):
    rgb = images.load_image(os.path.join(images.SAMPLES_DIR, "eval", name)).rgb
    rgb = cv2.resize(rgb, (200, 120), interpolation=cv2.INTER_AREA)
    shots.append(np.stack([rgb[y : y + H, 10 + t : 10 + t + W] for t in range(SHOT)]))
  gray = np.rint(np.concatenate(shots) @ np.array([0.3, 0.59, 0.11])).astype(np.uint8)
  frames = np.repeat(gray[..., None], 3, -1)
  return encode_ffv1(path, frames, rate=FPS)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  return two_shot_clip(tmp_path_factory.mktemp("clip") / "pan.mkv")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return hint_generator_workdir(tmp_path_factory.mktemp("hinted"))


@pytest.fixture(scope="module")
def engine(workdir):
  return app_engine(workdir)


def _a(rgb, x, y, r=3):
  """Mean Lab a (red-green) around (x, y)."""
  patch = rgb[y - r : y + r + 1, x - r : x + r + 1] / 255.0
  return float(np.asarray(color.rgb_to_lab(patch))[..., 1].mean())


def _hinted(engine, clip) -> ClipState:
  """A red point on frame 0 at (44, 25) and on frame SHOT + 3 at (60, 30)."""
  s = clip_actions.open_clip(engine, ClipState(base=session.Session(colour=RED)), clip)
  s = clip_actions.put(s, actions.click(engine, clip_actions.current(s), 44, 25, (W, H)))
  s = clip_actions.select_frame(engine, s, SHOT + 3)
  return clip_actions.put(s, actions.click(engine, clip_actions.current(s), 60, 30, (W, H)))


def test_shots_and_keyframes(engine, clip):
  s = clip_actions.open_clip(engine, ClipState(), clip, "holiday.mkv")
  frames = decode(clip)
  assert s.clip.frames == 2 * SHOT and s.clip.shots == (0, SHOT)
  for thumb, t in zip(s.clip.thumbs, s.clip.shots, strict=True):
    np.testing.assert_array_equal(thumb, frames[t])  # a gray clip: its gray is itself
  assert s.frame == 0 and s.clip.shot_range(1) == (SHOT, 2 * SHOT)
  s = clip_actions.select_shot(engine, s, 1)
  np.testing.assert_array_equal(clip_actions.current(s).photo.rgb, frames[SHOT])
  assert clip_actions.current(s).photo.name == "holiday frame 12"
  s = clip_actions.put(s, actions.click(engine, clip_actions.current(s), 10, 10, (W, H)))
  hinted = clip_actions.current(s)
  # Another frame: the hinted one stays a keyframe, a frame left without hints does not.
  s = clip_actions.select_frame(engine, s, 5)
  s = clip_actions.select_frame(engine, s, 7)
  assert [t for t, _ in s.keys] == [7, SHOT] and [t for t, _ in s.hinted] == [SHOT]
  s = clip_actions.select_frame(engine, s, SHOT)
  assert clip_actions.current(s).hints == hinted.hints
  np.testing.assert_array_equal(clip_actions.current(s).rendered.preview, hinted.rendered.preview)
  # Saturation is the clip's: the keyframe returned to takes it.
  s = clip_actions.put(s, actions.set_saturation(engine, clip_actions.current(s), 0.5))
  s = clip_actions.select_frame(engine, clip_actions.select_frame(engine, s, 0), SHOT)
  assert clip_actions.current(s).saturation == 0.5


def test_the_preview_moves_the_hints_through_the_shot(engine, clip):
  s = _hinted(engine, clip)
  s = clip_actions.preview(engine, clip_actions.select_frame(engine, s, 2))
  assert [t for t, _ in s.preview] == [0, 2, 4, 7, 9, 11]
  key = dict(s.keys)[0].rendered.preview
  shown = dict(s.preview)
  assert np.abs(shown[0].astype(int) - key).mean() < 1.0  # the keyframe itself
  plain = clip_actions.preview(engine, ClipState(clip=s.clip, frame=0)).preview
  for (t, rgb), (_, gray) in zip(s.preview, plain, strict=True):
    # The content moves 1 px left a frame: so does the red.
    assert _a(rgb, 44 - t, 25) > _a(gray, 44 - t, 25) + 15, t
  s = clip_actions.preview(engine, clip_actions.select_frame(engine, s, SHOT + 1))
  assert [t for t, _ in s.preview][0] == SHOT and len(s.preview) == 6


def test_colourise_is_what_the_command_makes_of_the_keyframe_file(engine, workdir, clip, tmp_path):
  s = _hinted(engine, clip)
  counted = []
  dst, paths, command = clip_actions.colourise(engine, s, str(tmp_path / "app"), counted.append)
  assert sum(counted) == 2 * SHOT
  assert [os.path.basename(p) for p in paths] == [
    "pan_color.mp4",
    "keyframes.json",
    "000000.png",
    "000015.png",
  ]
  listing = json.load(open(paths[1]))
  assert listing == {
    "keyframes": [{"frame": 0, "scribble": "000000.png"}, {"frame": 15, "scribble": "000015.png"}]
  }
  assert command.endswith("pan.mkv --hints keyframes.json -o pan_color.mp4")
  out = tmp_path / "cli.mp4"
  cmd = [sys.executable, "-m", "pix2pix_jax.colorize.main", "--workdir", workdir, "--quiet"]
  proc = start_process([*cmd, "--batch-size", "1", clip, "--hints", paths[1], "-o", str(out)])
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err
  ours, theirs = decode(dst), decode(str(out))
  assert ours.shape == (2 * SHOT, H, W, 3)
  np.testing.assert_array_equal(ours, theirs)
  assert _a(ours[0], 44, 25) > 10 and _a(ours[SHOT + 3], 60, 30) > 10


def test_a_model_without_hints_colourises_the_clip(clip, tmp_path):
  workdir = tiny_generator_workdir(tmp_path / "plain")
  colorizer = colorizer_lib.Colorizer.from_workdir(workdir, batch_size=1)
  engine = engine_lib.Engine(colorizer, model_flags=("--workdir", workdir, "--batch-size", "1"))
  s = clip_actions.open_clip(engine, ClipState(), clip)
  with pytest.raises(hints.HintsError, match="trained without colour hints"):
    actions.click(engine, clip_actions.current(s), 10, 10, (W, H))
  assert len(clip_actions.preview(engine, s).preview) == 6
  dst, paths, command = clip_actions.colourise(engine, s, str(tmp_path / "app"))
  assert paths == [dst] and "--hints" not in command
  assert decode(dst).shape == (2 * SHOT, H, W, 3)


def test_files_that_are_not_clips_are_one_line_messages(engine, clip, tmp_path):
  text = tmp_path / "notes.mp4"
  text.write_text("not a video")
  cut = tmp_path / "cut.mkv"
  cut.write_bytes(open(clip, "rb").read()[:300])
  for path, message in [
    (text, r"^holiday\.mp4: "),
    (cut, r"^holiday\.mp4: "),
    (tmp_path / "photo.png", r"^holiday\.png: not a clip"),
  ]:
    name = "holiday" + os.path.splitext(path)[1].replace(".mkv", ".mp4")
    with pytest.raises(errors.UserError, match=message) as info:
      clip_actions.open_clip(engine, ClipState(), str(path), name)
    assert "\n" not in str(info.value) and str(tmp_path) not in str(info.value)
  with pytest.raises(errors.UserError, match="no clip yet"):
    clip_actions.preview(engine, ClipState())
