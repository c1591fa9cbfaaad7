"""Hostile inputs and colliding outputs for pix2pix-colorize (odd names, a decompression bomb,
absurd video sizes, symlink loops): correct output or one line and status 1, bounded memory."""

import os
import struct
import sys
import zlib

import numpy as np
import pytest
from helpers import (
  REPO,
  make_testsrc_clip,
  mp4_declaring_frames,
  subprocess_env,
  tiny_config,
  tiny_generator_workdir,
)
from PIL import Image

from pix2pix_jax import images, input_pipeline
from pix2pix_jax.colorize import jobs as jobs_lib
from pix2pix_jax.colorize.video import probe
from pix2pix_jax.tools.bench import memory as memory_benchmark

# Odd names, each used for an image and a video.
NAMES = [
  "-dash",
  "with space",
  "quote'single",
  'quote"double',
  "ünïcødé 日本",
  "-dash 'all' \"of\" ü",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_generator_workdir(tmp_path_factory.mktemp("model") / "run")


def _photo(path, size=(30, 20)):
  rng = np.random.default_rng(len(str(path)))
  Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
  return path


def bomb_png(path, side=100_000):
  """A 60-byte PNG whose header declares side x side gray pixels (10 GB decoded)."""

  def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

  header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
  data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
  path.write_bytes(data + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
  return path


def y4m_declaring(path, width, height):
  """A raw-video header declaring width x height frames, with a few bytes of one frame."""
  header = f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n"
  path.write_bytes(header.encode() + b"\x80" * 64)
  return path


def _colorize(workdir, *args, cwd=REPO):
  cmd = [sys.executable, "-m", "pix2pix_jax.colorize.main", "--workdir", str(workdir), "--quiet"]
  return memory_benchmark.run_measured([*cmd, *args], env=subprocess_env(), cwd=str(cwd))


def _snapshot(folder):
  return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def _errors(stderr):
  return [line for line in stderr.splitlines() if line.startswith("error:")]


# Colliding outputs: reported before anything is written.


def test_the_same_name_from_two_folders_is_reported(tmp_path):
  a = _photo((tmp_path / "a").mkdir() or tmp_path / "a" / "x.png")
  b = _photo((tmp_path / "b").mkdir() or tmp_path / "b" / "x.png")
  jobs = jobs_lib.plan([str(a), str(b)], str(tmp_path / "out"))
  assert [j.dst for j in jobs] == [str(tmp_path / "out" / "x.png"), None]
  assert jobs[1].error == f"{b}: output {tmp_path / 'out' / 'x.png'} would also be written by {a}"


def test_the_same_file_given_twice_is_colourised_once(tmp_path):
  x = _photo(tmp_path / "x.png")
  (tmp_path / "d").mkdir()
  inputs = [str(x), str(tmp_path / "d" / ".." / "x.png"), str(x), str(tmp_path / "*.png")]
  jobs = jobs_lib.plan(inputs, str(tmp_path / "o"))
  assert [(j.src, j.dst, j.error) for j in jobs] == [(str(x), str(tmp_path / "o" / "x.png"), None)]


def test_an_output_that_is_an_input_is_refused(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  photos = tmp_path / "photos"
  photos.mkdir()
  x = _photo(photos / "x.png")
  (tmp_path / "alias").symlink_to(photos)
  os.link(x, tmp_path / "hard.png")
  cases = [
    (["photos/x.png"], "photos/x.png"),  # the same path
    (["photos/x.png"], str(x)),  # relative vs absolute
    (["photos/x.png"], "alias/x.png"),  # through a symlinked folder
    (["photos/x.png"], "hard.png"),  # a hard link of the input
    (["photos"], "alias"),  # a folder into itself
    (["photos/x.png", "hard.png"], "photos"),  # one input's output is the other input
  ]
  for inputs, output in cases:
    jobs = jobs_lib.plan(inputs, output)
    assert any(j.error and "output is the input file" in j.error for j in jobs), (inputs, output)
  assert x.read_bytes() == (tmp_path / "hard.png").read_bytes()


@pytest.mark.integration
def test_an_output_folder_blocked_by_a_file_is_one_line(tmp_path, workdir):
  x, y = _photo(tmp_path / "x.png"), _photo(tmp_path / "y.png")
  blocker = tmp_path / "notes.txt"
  blocker.write_text("keep me")
  for output in (blocker, blocker / "sub"):
    jobs = jobs_lib.plan([str(x), str(y)], str(output))
    assert [j.error for j in jobs] == [f"{output}: {blocker} is a file, but the output is a folder"]
  result = _colorize(workdir, str(x), str(y), "--output", str(blocker))
  assert result.returncode == 1
  assert _errors(result.stderr) == [
    f"error: {blocker}: {blocker} is a file, but the output is a folder"
  ]
  assert blocker.read_text() == "keep me"


# Hostile files, all in one real run of the command.


@pytest.mark.integration
def test_odd_names_bombs_absurd_videos_and_symlink_loops(tmp_path, workdir):
  src = tmp_path / "in"
  src.mkdir()
  for name in NAMES:
    _photo(src / f"{name}.png")
    make_testsrc_clip(src / f"{name}.mp4")
  bomb_png(src / "bomb.png")
  (src / "loop").symlink_to(".", target_is_directory=True)  # a folder loop: not followed
  (src / "ring1.png").symlink_to("ring2.png")  # a loop of file links
  (src / "ring2.png").symlink_to("ring1.png")
  y4m_declaring(tmp_path / "big.mkv", 16000, 16000)  # ffmpeg accepts this size
  y4m_declaring(tmp_path / "huge.mkv", 60000, 60000)  # ffmpeg refuses this one
  make_testsrc_clip(tmp_path / "-direct.mp4")  # a leading dash on the command line itself
  before = _snapshot(tmp_path)

  result = _colorize(
    workdir, "--output", "out", "--", "in", "big.mkv", "huge.mkv", "-direct.mp4", cwd=tmp_path
  )
  assert result.returncode == 1, result.stderr
  errors = sorted(_errors(result.stderr))
  assert errors == [
    "error: big.mkv: declares 16000x16000 frames, over the 67,108,864-pixel limit",
    "error: huge.mkv: not a readable media file (Picture size 60000x60000 is invalid)",
    errors[2],
    "error: in/ring1.png: broken symbolic link (or a loop of links)",
    "error: in/ring2.png: broken symbolic link (or a loop of links)",
  ], result.stderr
  assert errors[2].startswith("error: in/bomb.png: not a readable image (Image size (10000000000")
  assert "decompression bomb" in errors[2] and "Traceback" not in result.stderr
  out = tmp_path / "out"
  for name in NAMES:
    assert Image.open(out / f"{name}.png").size == (30, 20)
    info = probe.probe(str(out / f"{name}.mp4"))
    assert (info.width, info.height) == (32, 24)
    assert probe.count_frames(str(out / f"{name}.mp4")) == 6
  assert probe.count_frames(str(out / "-direct.mp4")) == 6
  assert not (out / "loop").exists() and not (out / "bomb.png").exists()
  assert not [p for p in out.rglob("*") if ".partial" in p.name]
  after = _snapshot(tmp_path)
  assert {p: b for p, b in after.items() if out not in p.parents} == before  # inputs untouched
  # Bounded: the bomb would decode to 10 GB and a 16000x16000 batch of frames to 6 GB.
  assert result.peak_rss_mb < 2500, result.peak_rss_mb


def test_a_bomb_in_a_training_folder_is_skipped_with_its_reason(tmp_path):
  bomb = bomb_png(tmp_path / "bomb.png")
  reason = input_pipeline._check_readable(str(bomb))
  assert reason.startswith("DecompressionBombError: Image size (10000000000 pixels)")
  with pytest.raises(images.files.MediaError, match=f"{bomb}: not a readable image"):
    images.load_image(str(bomb))


def test_a_symlink_loop_in_a_training_folder_lists_each_photo_once(tmp_path):
  (tmp_path / "sub").mkdir()
  _photo(tmp_path / "a.png")
  _photo(tmp_path / "sub" / "b.png")
  (tmp_path / "sub" / "up").symlink_to("..", target_is_directory=True)
  found = input_pipeline._find_images(str(tmp_path))
  assert found == [str(tmp_path / "a.png"), str(tmp_path / "sub" / "b.png")]


@pytest.mark.integration
def test_a_video_declaring_two_billion_frames(tmp_path, workdir):
  # decord 0.6 sizes its index by the declared count and aborts the process (std::bad_alloc);
  # video.reader reads the count first (probe.declared_frames) and takes the ffmpeg pipe.
  clip = mp4_declaring_frames(tmp_path / "long.mp4", 2_000_000_000)
  result = _colorize(workdir, str(clip), "--output", str(tmp_path / "out.mp4"))
  assert result.returncode == 0, result.stderr
  assert probe.count_frames(str(tmp_path / "out.mp4")) == 6  # the frames it really has
  assert result.peak_rss_mb < 2500


def test_training_reads_photos_with_odd_names(tmp_path):
  for name in NAMES:
    _photo(tmp_path / f"{name}.png", size=(40, 40))
  listing = input_pipeline.list_images(str(tmp_path), "train", 0.0)
  assert sorted(os.path.basename(f) for f in listing.files) == sorted(f"{n}.png" for n in NAMES)
  assert listing.skipped == ()
  config = tiny_config(
    **{"data.source": "folder", "data.folder": str(tmp_path), "data.eval_fraction": 0.0}
  )
  batch = next(input_pipeline.create_train_iterator(config))
  assert batch["image"].shape == (4, 32, 32, 3)
