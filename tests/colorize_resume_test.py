"""--skip-existing: a folder job killed (SIGKILL) or stopped (SIGTERM) goes on where it stopped."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import make_clip, start_colorize, tiny_generator_workdir
from PIL import Image

from pix2pix_jax import files
from pix2pix_jax.colorize import main as colorize
from pix2pix_jax.colorize.video import probe


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_generator_workdir(tmp_path_factory.mktemp("run"))


start = start_colorize


def temps(out):
  return sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, ".*")))


def _written(out, stem):
  """Bytes in the temporary files of output `stem`."""
  names = [n for n in temps(out) if n.startswith(f".{stem}.") and not n.endswith(".lock")]
  sizes = [os.path.getsize(os.path.join(out, n)) for n in names]
  return sum(sizes) if sizes else -1


def stop_when_writing(proc, out, stem, signum, *, min_bytes=0):
  """Sends `signum` once the temporary files of output `stem` hold more than `min_bytes`."""
  deadline = time.monotonic() + 300
  while _written(out, stem) < min_bytes + (min_bytes > 0):
    assert proc.poll() is None, proc.communicate()
    assert time.monotonic() < deadline
    time.sleep(0.01)
  proc.send_signal(signum)
  return proc.communicate(timeout=120)


def check_images(out, names):
  for name in names:
    with Image.open(os.path.join(out, name)) as image:
      image.load()  # a partial file would fail here
      assert image.size == (40, 30)


@pytest.mark.integration
def test_killed_and_stopped_jobs_continue_where_they_stopped(workdir, tmp_path):
  src, out = tmp_path / "in", str(tmp_path / "out")
  src.mkdir()
  rng = np.random.default_rng(0)
  images = [f"{i}.png" for i in range(6)]
  for name in images:
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), np.uint8)).save(src / name)
  # Videos come after the images; long enough (200 frames) to be caught while being written.
  make_clip(str(src / "a.mp4"), audio="aac", seconds=8)
  make_clip(str(src / "b.mp4"), audio="aac", seconds=8)

  # 1. SIGKILL while a.mp4 is being written: nothing is cleaned up, nothing half-written is final.
  proc = start(workdir, src, out, "--skip-existing")
  stop_when_writing(proc, out, "a", signal.SIGKILL)
  assert proc.returncode == -signal.SIGKILL
  assert sorted(os.listdir(out)) == sorted(images + temps(out)) and temps(out)
  check_images(out, images)
  left = temps(out)
  assert all(name.startswith(".a.") for name in left), left
  # The output's lock file stays until the next writer of a.mp4 takes it over and removes it.
  assert ".a.mp4.lock" in left
  left.remove(".a.mp4.lock")

  # 2. Started again and stopped with SIGTERM while b.mp4's frames are being encoded: the
  # images are skipped, the killed run's leftovers removed, a.mp4 finished, and b.mp4's
  # temporary files removed.
  stamps = {name: os.path.getmtime(os.path.join(out, name)) for name in images}
  proc = start(workdir, src, out, "--skip-existing")
  stdout, stderr = stop_when_writing(proc, out, "b", signal.SIGTERM, min_bytes=2000)
  assert proc.returncode == 128 + signal.SIGTERM, stderr
  assert f"removed {len(left)} unfinished file(s) of an interrupted run" in stdout
  assert "interrupted: every output written so far is complete" in stderr
  assert temps(out) == [] and "b.mp4" not in os.listdir(out)
  assert probe.count_frames(os.path.join(out, "a.mp4")) == 200
  assert {name: os.path.getmtime(os.path.join(out, name)) for name in images} == stamps

  # 3. Once more: only b.mp4 is left to do.
  stamp = os.path.getmtime(os.path.join(out, "a.mp4"))
  proc = start(workdir, src, out, "--skip-existing")
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stderr
  assert "done: 1 of 8 inputs colourised, 7 skipped (output exists)" in stdout
  assert sorted(os.listdir(out)) == sorted(images + ["a.mp4", "b.mp4"])
  assert probe.count_frames(os.path.join(out, "b.mp4")) == 200
  assert probe.probe(os.path.join(out, "b.mp4")).audio_codec == "aac"
  assert os.path.getmtime(os.path.join(out, "a.mp4")) == stamp


@pytest.mark.integration
def test_only_dead_processes_leftovers_are_removed(tmp_path):
  dead = subprocess.run(
    [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
  )
  dead_pid = int(dead.stdout)
  ours = files.sibling_temp(str(tmp_path / "x.mp4"), "partial")
  theirs = tmp_path / f".x.{dead_pid}@{files.where()}-abcd0123.partial.mp4"
  theirs.write_bytes(b"half")
  user_files = [".x.mp4", "x.12-ab.partial.mp4", ".hidden", "x.mp4"]
  for name in user_files:
    (tmp_path / name).write_bytes(b"mine")
  assert files.remove_stale_temps(str(tmp_path)) == [str(theirs)]
  assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(ours), *user_files])


def test_skip_existing_and_overwrite_exclude_each_other(capsys):
  with pytest.raises(SystemExit) as exit_info:
    colorize.main(["--workdir", "w", "x.png", "-o", "o.png", "--overwrite", "--skip-existing"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert err.endswith("argument --skip-existing: not allowed with argument --overwrite"), err


def test_a_job_with_every_output_present_loads_no_model(tmp_path, capsys):
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "p.png")
  (tmp_path / "out").mkdir()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "out" / "p.png")
  # The workdir does not exist: had the model been loaded, this would fail.
  code = colorize.main(
    ["--workdir", str(tmp_path / "none"), str(tmp_path / "p.png"), "-o", str(tmp_path / "out")]
    + ["--skip-existing"]
  )
  assert code == 0
  assert "done: 0 of 1 inputs colourised, 1 skipped (output exists)" in capsys.readouterr().out
