"""The pix2pix-colorize command line: images of every mode, videos, folders, errors."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import make_clip, subprocess_env, tiny_generator_workdir, write_images
from PIL import Image

from pix2pix_jax.colorize import main as colorize
from pix2pix_jax.colorize.video import probe


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_generator_workdir(tmp_path_factory.mktemp("run"))


def run(*args):
  return colorize.main([str(a) for a in args])


def test_images_of_every_mode_keep_their_size(workdir, tmp_path, capsys):
  sizes = write_images(tmp_path / "in")
  assert run("--workdir", workdir, tmp_path / "in", "--output", tmp_path / "out") == 0
  for name, size in sizes.items():
    with Image.open(tmp_path / "out" / name) as out:
      assert out.size == size, name
      assert out.mode in ("RGB", "RGBA"), name
      assert out.getexif().get(0x0112, 1) == 1  # the rotation is in the pixels
  with Image.open(tmp_path / "out" / "rgba.png") as out:
    assert out.mode == "RGBA"
  assert "9 of 9 inputs" in capsys.readouterr().out


def test_single_file_output_and_overwrite(workdir, tmp_path, capsys):
  write_images(tmp_path / "in")
  dst = tmp_path / "x" / "colour.png"
  assert run("--workdir", workdir, tmp_path / "in" / "gray.png", "-o", dst) == 0
  assert Image.open(dst).size == (45, 31)
  stamp = os.path.getmtime(dst)
  assert run("--workdir", workdir, tmp_path / "in" / "gray.png", "-o", dst) == 1
  assert "exists" in capsys.readouterr().err and os.path.getmtime(dst) == stamp
  assert run("--workdir", workdir, tmp_path / "in" / "gray.png", "-o", dst, "--overwrite") == 0


def test_folders_keep_their_tree_and_globs_expand(workdir, tmp_path):
  write_images(tmp_path / "in" / "sub")
  shutil.copy(tmp_path / "in" / "sub" / "rgb.jpg", tmp_path / "in" / "top.jpg")
  assert run("--workdir", workdir, tmp_path / "in", "-o", tmp_path / "a") == 0
  assert (tmp_path / "a" / "top.jpg").exists() and (tmp_path / "a" / "sub" / "rgb.bmp").exists()
  assert (
    run("--workdir", workdir, str(tmp_path / "in" / "sub" / "*.png"), "-o", tmp_path / "b") == 0
  )
  assert sorted(os.listdir(tmp_path / "b")) == ["gray.png", "gray16.png", "palette.png", "rgba.png"]


def test_video_with_audio(workdir, tmp_path, capsys):
  src = make_clip(str(tmp_path / "clip.mp4"), audio="aac", seconds=0.4)
  assert run("--workdir", workdir, src, "-o", tmp_path / "out", "--no-progress") == 0
  out = str(tmp_path / "out" / "clip.mp4")
  assert probe.count_frames(out) == 10 and probe.probe(out).audio_codec == "aac"
  assert "10 frames 64x48" in capsys.readouterr().out


@pytest.mark.integration
def test_a_normal_run_prints_no_warning(workdir, tmp_path):
  src = tmp_path / "photo.png"
  Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(src)
  result = subprocess.run(
    [sys.executable, "-m", "pix2pix_jax.colorize.main", "--workdir", workdir, str(src)]
    + ["-o", str(tmp_path / "out.png")],
    env=subprocess_env(),
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr
  assert result.stderr == "", result.stderr
  assert "1 of 1 inputs colourised" in result.stdout


def _disk_full_folder(tmp_path):
  folder = tmp_path / "tiny"
  folder.mkdir()
  proc = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True
  )
  return str(folder) if proc.returncode == 0 else None


def test_bad_inputs_fail_alone_with_one_line_each(workdir, tmp_path, capsys):
  write_images(tmp_path / "in")
  good = tmp_path / "in" / "rgb.jpg"
  text = tmp_path / "notes.mp4"
  text.write_text("not a video\n" * 50)
  audio = tmp_path / "sound.mp4"
  subprocess.run(
    [
      probe.ffmpeg_exe(),
      "-v",
      "error",
      "-f",
      "lavfi",
      "-i",
      "sine=duration=0.3",
      "-c:a",
      "aac",
      str(audio),
    ],
    check=True,
  )
  cut = tmp_path / "cut.mp4"
  clip = make_clip(str(tmp_path / "c.mp4"), extra=("-movflags", "+faststart"))
  cut.write_bytes(open(clip, "rb").read()[:2500])
  broken = tmp_path / "broken.png"
  broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
  missing = tmp_path / "missing.mp4"
  code = run(
    "--workdir",
    workdir,
    good,
    text,
    audio,
    cut,
    broken,
    missing,
    "-o",
    tmp_path / "out",
    "--no-progress",
  )
  err = capsys.readouterr().err
  assert code == 1
  for path, cause in [
    (text, "not a readable media"),
    (audio, "no video stream"),
    (cut, "not a readable media file"),
    (broken, "not a readable image"),
    (missing, "no such file"),
  ]:
    assert any(str(path) in line and cause in line for line in err.splitlines()), err
  assert "5 failed" in err
  assert sorted(os.listdir(tmp_path / "out")) == ["rgb.jpg"]


def test_unwritable_output_folder(workdir, tmp_path, capsys):
  write_images(tmp_path / "in")
  blocker = tmp_path / "file"
  blocker.write_text("x")
  assert run("--workdir", workdir, tmp_path / "in" / "rgb.jpg", "-o", blocker / "o" / "o.jpg") == 1
  assert "cannot create output folder" in capsys.readouterr().err


def test_disk_full_leaves_nothing(workdir, tmp_path, capsys):
  folder = _disk_full_folder(tmp_path)
  if folder is None:
    pytest.skip("cannot mount a small tmpfs here")
  try:
    src = make_clip(str(tmp_path / "big.mp4"), size="320x240", seconds=2, extra=("-crf", "0"))
    code = run(
      "--workdir", workdir, src, "-o", os.path.join(folder, "o.mp4"), "--no-progress", "--crf", "0"
    )
    assert code == 1
    assert "no space left on device" in capsys.readouterr().err
    assert os.listdir(folder) == []
  finally:
    subprocess.run(["umount", folder], check=False)
