"""Keyframe hint files for clips: keyframe JSON files, folders of scribbles named by frame index,
plain hint files as a keyframe at frame 0, and one HintsError line for each bad file."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from pix2pix_jax import color
from pix2pix_jax.colorize.video import settings
from pix2pix_jax.hints import HintsError, keyframes

HEIGHT, WIDTH, FRAMES, FPS = 48, 64, 300, 30.0


def _scribble(path, size=(WIDTH, HEIGHT), at=(5, 7), rgb=(200, 30, 40)):
  rgba = np.zeros((size[1], size[0], 4), np.uint8)
  rgba[at[1], at[0]] = (*rgb, 255)
  Image.fromarray(rgba, "RGBA").save(path)
  return path


def _colour(path, size=(WIDTH, HEIGHT)):
  rgb = np.zeros((size[1], size[0], 3), np.uint8)
  rgb[..., 2] = 255  # blue everywhere
  Image.fromarray(rgb, "RGB").save(path)
  return path


def _write(folder, data, name="keys.json"):
  path = os.path.join(folder, name)
  with open(path, "w") as f:
    f.write(data if isinstance(data, str) else json.dumps(data))
  return path


def _load(path, **kwargs):
  clip = dict(frames=FRAMES, fps=FPS, height=HEIGHT, width=WIDTH)
  return keyframes.load(path, **{**clip, **kwargs})


def test_a_keyframe_file_gives_points_scribbles_and_colour_frames_sorted_by_frame(tmp_path):
  _scribble(tmp_path / "shot3.png")
  os.mkdir(tmp_path / "painted")
  _colour(tmp_path / "painted" / "f200.png")
  path = _write(
    tmp_path,
    {
      "keyframes": [
        {"frame": 200, "colour": "painted/f200.png"},
        {"frame": 0, "points": [{"x": 3, "y": 4, "rgb": [255, 0, 0]}]},
        {"time": "00:00:02.500", "scribble": "shot3.png"},
      ]
    },
  )
  keys = _load(path)
  assert [k.frame for k in keys] == [0, 75, 200]
  assert all(k.hints.shape == (HEIGHT, WIDTH) for k in keys)
  assert np.argwhere(keys[0].hints.mask).tolist() == [[4, 3]]
  assert np.argwhere(keys[1].hints.mask).tolist() == [[7, 5]]
  # The coloured frame: its ab on a grid every 16 px, offset by 8 (3 x 4 points at 48x64).
  dense = keys[2].hints
  assert np.argwhere(dense.mask).tolist() == [[y, x] for y in (8, 24, 40) for x in (8, 24, 40, 56)]
  blue = np.asarray(color.rgb_to_lab(np.array([0.0, 0.0, 1.0])))[1:]
  np.testing.assert_allclose(dense.ab[dense.mask], np.tile(blue, (12, 1)), atol=1e-3)
  spaced = _load(path, spacing=8)[2].hints
  assert spaced.mask.sum() == 6 * 8


def test_times_are_the_first_frame_shown_at_or_after_them():
  assert keyframes.parse_seconds("00:01:12.500") == 72.5
  assert keyframes.parse_seconds("90") == 90.0 and keyframes.parse_seconds("1:02:03.25") == 3723.25
  assert settings.parse_seconds("01:30") == 90.0  # the colourise CLI's --start uses the same
  with pytest.raises(ValueError):
    keyframes.parse_seconds("1:75")
  assert keyframes.frame_at(72.5, 29.97) == 2173  # 2172.8 frames in: the next frame
  assert keyframes.frame_at(0.0, 25) == 0 and keyframes.frame_at(0.045, 25) == 2
  assert keyframes.frame_at(0.0405, 25) == 1  # 0.5 ms late: still frame 1
  # A frame's presentation time printed to the millisecond maps back to that frame.
  for fps in (23.976, 25.0, 29.97, 30.0, 59.94, 60.0):
    times = [round(i / fps, 3) for i in range(2000)]
    assert [keyframes.frame_at(t, fps) for t in times] == list(range(2000)), fps


def test_a_folder_of_scribbles_named_by_frame_index(tmp_path):
  _scribble(tmp_path / "000120.png", at=(1, 2))
  _scribble(tmp_path / "7.png", at=(3, 4))
  (tmp_path / ".DS_Store").write_bytes(b"")
  keys = _load(str(tmp_path))
  assert [(k.frame, np.argwhere(k.hints.mask).tolist()) for k in keys] == [
    (7, [[4, 3]]),
    (120, [[2, 1]]),
  ]


def test_a_plain_scribble_or_point_list_is_a_keyframe_at_frame_0(tmp_path):
  (key,) = _load(_scribble(tmp_path / "s.png"))
  assert key.frame == 0 and key.hints.mask.sum() == 1
  (key,) = _load(_write(tmp_path, [{"x": 1, "y": 2, "rgb": [0, 255, 0]}], "points.json"))
  assert key.frame == 0 and np.argwhere(key.hints.mask).tolist() == [[2, 1]]


def _bad_keyframe_file(tmp_path, case):
  """A keyframe file (or folder) that `load` must refuse, and the cause its message names."""
  _scribble(tmp_path / "ok.png")
  _scribble(tmp_path / "small.png", size=(32, 24))
  _colour(tmp_path / "big.png", size=(128, 96))
  (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
  entries = {
    "frame past the end": ({"frame": 300, "scribble": "ok.png"}, "frame 300 is past the end"),
    "time past the end": ({"time": "00:00:10", "scribble": "ok.png"}, "past the end of the clip"),
    "wrong size": ({"frame": 1, "scribble": "small.png"}, "hint image is 32x24, the clip is 64x48"),
    "colour size": ({"frame": 1, "colour": "big.png"}, "frame image is 128x96, the clip is 64x48"),
    "unreadable": ({"frame": 1, "scribble": "broken.png"}, "broken.png: not a readable hint image"),
    "missing": ({"frame": 1, "colour": "gone.png"}, "gone.png: no such file"),
    "unknown key": ({"frame": 1, "scribble": "ok.png", "blend": 1}, 'unknown key "blend"'),
    "no hints": ({"frame": 1}, '"scribble", "colour" or "painted" (got none)'),
    "two hints": (
      {"frame": 1, "scribble": "ok.png", "colour": "big.png"},
      '(got "scribble" and "colour")',
    ),
    "no frame": ({"scribble": "ok.png"}, 'give one of "frame" or "time"'),
    "bad time": ({"time": "1:75", "scribble": "ok.png"}, "'1:75' is not a time"),
  }
  if case in entries:
    entry, cause = entries[case]
    return _write(tmp_path, {"keyframes": [{"frame": 0, "scribble": "ok.png"}, entry]}), cause
  if case == "duplicate frames":
    keys = [{"frame": 30, "scribble": "ok.png"}, {"time": 1.0, "scribble": "ok.png"}]
    return _write(tmp_path, {"keyframes": keys}), "keyframe 1: frame 30 already has keyframe 0"
  if case == "unknown top-level key":
    return _write(tmp_path, {"keyframes": [], "fps": 30}), 'unknown key "fps"'
  if case == "not JSON":
    return _write(tmp_path, "{keyframes"), "not a readable JSON hint file"
  folder = tmp_path / "scribbles"
  folder.mkdir()
  _scribble(folder / "000010.png")
  if case == "non-numeric name":
    _scribble(folder / "shot3.png")
    return str(folder), "shot3.png is not named by a frame index"
  assert case == "folder frame past the end"
  _scribble(folder / "000300.png")
  return str(folder), "000300.png: frame 300 is past the end of the clip (300 frames)"


@pytest.mark.parametrize(
  "case",
  [
    "frame past the end",
    "time past the end",
    "wrong size",
    "colour size",
    "unreadable",
    "missing",
    "unknown key",
    "no hints",
    "two hints",
    "no frame",
    "bad time",
    "duplicate frames",
    "unknown top-level key",
    "not JSON",
    "non-numeric name",
    "folder frame past the end",
  ],
)
def test_a_bad_keyframe_file_is_one_line_naming_it_and_the_cause(tmp_path, case):
  path, cause = _bad_keyframe_file(tmp_path, case)
  with pytest.raises(HintsError) as e:
    _load(path)
  message = str(e.value)
  assert message.startswith(str(path) + ": ") and cause in message, message
  assert "\n" not in message


def test_times_need_the_frame_rate(tmp_path):
  _scribble(tmp_path / "ok.png")
  path = _write(tmp_path, {"keyframes": [{"time": 1.5, "scribble": "ok.png"}]})
  assert [k.frame for k in _load(path)] == [45]
  with pytest.raises(HintsError, match='frame rate is unknown: give "frame"'):
    _load(path, fps=None)
