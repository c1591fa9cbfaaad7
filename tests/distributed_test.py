"""Several processes on localhost (CPU devices, gloo collectives) behave as one program."""

import functools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import free_port, main_command, subprocess_env, write_photo_folder

from pix2pix_jax import checkpoint
from pix2pix_jax.train import workdir_lock

pytestmark = pytest.mark.integration  # every test here starts processes

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)


def _launch(args_for, n, local_devices, logs=None, **kw):
  """n processes; their output is piped (read it with _wait), or written to logs/process<i>.log
  where the test waits on them otherwise (a full pipe would stop a process that keeps writing)."""
  return [
    subprocess.Popen(
      args_for(i),
      # Without the persistent compilation cache, as distributed.initialize also decides for
      # multi-process CPU programs (they hang in their first collective when loaded from it).
      env=subprocess_env(
        local_devices, PIX2PIX_HEARTBEAT_TIMEOUT="10", JAX_ENABLE_COMPILATION_CACHE="false"
      ),
      stdout=subprocess.PIPE if logs is None else open(logs / f"process{i}.log", "w"),
      stderr=subprocess.STDOUT,
      text=True,
      **kw,
    )
    for i in range(n)
  ]


def _wait(procs, timeout=300):
  outs = []
  for p in procs:
    out, _ = p.communicate(timeout=timeout)
    outs.append(out)
  return [p.returncode for p in procs], outs


def test_two_processes_match_one_process(tmp_path):
  driver = os.path.join(TESTS, "distributed_driver.py")
  one = tmp_path / "one.npz"
  codes, outs = _wait(_launch(lambda i: [sys.executable, driver, "--out", str(one)], 1, 4))
  assert codes == [0], outs
  two = tmp_path / "two.npz"
  port = free_port()
  codes, outs = _wait(
    _launch(
      lambda i: [
        sys.executable,
        driver,
        "--out",
        str(two),
        "--process-id",
        str(i),
        "--num-processes",
        "2",
        "--port",
        str(port),
      ],
      2,
      2,
    )
  )
  assert codes == [0, 0], outs
  assert "4 devices" in outs[1]
  a, b = np.load(one), np.load(two)
  assert len(a.files) == len(b.files) > 10
  for name in a.files:
    # Same global batch and devices; only the all-reduce implementation differs (gloo vs
    # in-process), which can change float summation order.
    np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-6, err_msg=name)


def _main_args(workdir, folder, port, steps, process_id):
  return main_command(
    workdir,
    folder,
    steps,
    "--config.checkpoint_every_steps=2",
    f"--coordinator_address=localhost:{port}",
    "--num_processes=2",
    f"--process_id={process_id}",
  )


def test_two_processes_train_as_one_stop_together_and_resume(tmp_path):
  """Two processes train one model (one workdir lock, one event file); when one dies the other
  exits too; the same two-process command then resumes from the newest checkpoint. (One test, so
  that the suite starts two-process programs, which compile without the cache, once less.)"""
  folder = write_photo_folder(tmp_path / "photos")
  workdir = tmp_path / "run"
  port = free_port()
  procs = _launch(
    lambda i: _main_args(workdir, folder, port, 100000, i), 2, 1, logs=tmp_path, cwd=REPO
  )
  deadline = time.time() + 240
  while not os.path.isdir(workdir / "checkpoints" / "2"):
    assert time.time() < deadline, "training never reached step 2"
    assert all(p.poll() is None for p in procs)
    time.sleep(0.5)
  # Only process 0 holds the workdir lock, and a third run on the workdir is refused naming it.
  lock = json.loads((workdir / workdir_lock.LOCK_FILE).read_text())
  assert lock["pid"] == procs[0].pid
  third = subprocess.run(
    main_command(workdir, folder, 100000),
    env=subprocess_env(),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=240,
  )
  assert third.returncode == 1 and f"being trained by pid {procs[0].pid} on" in third.stderr
  procs[1].send_signal(signal.SIGKILL)
  start = time.time()
  try:
    procs[0].wait(timeout=120)
  except subprocess.TimeoutExpired:
    procs[0].kill()
    tail = (tmp_path / "process0.log").read_text()[-3000:]
    pytest.fail(f"process 0 hung after its peer died; its output ends:\n{tail}")
  assert procs[0].returncode != 0
  assert time.time() - start < 120

  saved = checkpoint.latest_step(str(workdir))
  assert saved is not None and saved >= 2 and saved % 2 == 0
  port = free_port()
  codes, outs = _wait(
    _launch(functools.partial(_main_args, workdir, folder, port, saved + 2), 2, 1, cwd=REPO)
  )
  assert codes == [0, 0], outs
  assert f"resumed from step {saved}" in outs[0]
  assert checkpoint.latest_step(str(workdir)) == saved + 2
  # Only process 0 writes logs: one event file per run, not one per process.
  assert len([f for f in os.listdir(workdir) if f.startswith("events.out")]) == 2
