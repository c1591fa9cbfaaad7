"""Two runs, one workdir: the second refuses at once naming the owner; a dead owner's lock is
taken over; a sweep never gives two runs one workdir."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import REPO, main_command, subprocess_env, write_photo_folder

from pix2pix_jax.tools.sweep import spec
from pix2pix_jax.train import workdir_lock


def test_a_held_workdir_is_refused_naming_host_and_pid(tmp_path):
  with workdir_lock.hold(str(tmp_path)):
    owner = json.loads((tmp_path / workdir_lock.LOCK_FILE).read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {os.getpid()} on host "):
      with workdir_lock.hold(str(tmp_path)):
        pass
  with workdir_lock.hold(str(tmp_path)):  # released on exit
    pass
  assert (tmp_path / workdir_lock.LOCK_FILE).read_text() == ""  # a clean exit names no owner


@pytest.mark.integration
def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, caplog):
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import sys, time; from pix2pix_jax.train import workdir_lock\n"
      "with workdir_lock.hold(sys.argv[1]):\n  print('held', flush=True); time.sleep(600)",
      str(tmp_path),
    ],
    env=subprocess_env(),
    cwd=REPO,
    stdout=subprocess.PIPE,
    text=True,
  )
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {holder.pid} on host"):
    with workdir_lock.hold(str(tmp_path)):
      pass
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with workdir_lock.hold(str(tmp_path)):
    owner = json.loads((tmp_path / workdir_lock.LOCK_FILE).read_text())
    assert owner["pid"] == os.getpid()
  assert f"from pid {holder.pid} on host" in caplog.text and "no longer running" in caplog.text


@pytest.mark.integration
def test_a_second_training_on_a_live_workdir_refuses_at_once(tmp_path):
  photos = write_photo_folder(tmp_path / "photos", n=8)
  workdir = tmp_path / "run"
  first = subprocess.Popen(
    main_command(workdir, photos, 100_000, "--config.checkpoint_every_steps=1"),
    env=subprocess_env(),
    cwd=REPO,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    deadline = time.time() + 240
    while not (workdir / "checkpoints" / "1").is_dir():
      assert first.poll() is None and time.time() < deadline, first.stderr.read()
      time.sleep(0.2)
    second = subprocess.run(
      main_command(workdir, photos, 100_000),
      env=subprocess_env(),
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=240,
    )
    assert second.returncode == 1
    assert f"is being trained by pid {first.pid} on host {socket.gethostname()}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.poll() is None  # the first run goes on, untouched
  finally:
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
  assert first.returncode == 0


def test_a_sweep_never_gives_two_runs_one_workdir(tmp_path):
  """Run folders come from the swept values; two values that name the same folder are refused
  before anything is launched (and two sweeps started on one output meet the workdir lock)."""
  path = tmp_path / "clash.py"
  config = os.path.join(REPO, "configs", "default.py")
  path.write_text(
    "def get_sweep():\n"
    f"  return {{'base_config': {config!r},\n"
    "    'grid': {'optim.learning_rate': [1e-4, 1.00001e-4]}}\n"
  )
  with pytest.raises(spec.SweepError, match="two runs share a name"):
    spec.load_sweep(str(path), root=str(tmp_path / "runs"))
  assert not (tmp_path / "runs").exists()
