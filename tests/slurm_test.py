"""SLURM for real: a single-node cluster on localhost (.ci/slurm_cluster.sh) runs a sweep,
requeues a training job told to stop (SIGUSR1), and makes one program of `srun --ntasks=2`."""

import contextlib
import csv
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers import (
  REPO,
  exit_status,
  main_command,
  make_clip,
  subprocess_env,
  tiny_generator_workdir,
  tiny_overrides,
  write_photo_folder,
  write_sweep,
)
from PIL import Image

from pix2pix_jax import checkpoint
from pix2pix_jax.colorize.video import probe
from pix2pix_jax.tools.sweep import main as sweep
from pix2pix_jax.tools.sweep import slurm

pytestmark = pytest.mark.integration  # every test here starts processes

SCRIPT = os.path.join(REPO, ".ci", "slurm_cluster.sh")
# Evaluation at the last step only, no sample grids.
TINY = tiny_overrides(eval_every_steps=2, sample_every_steps=1000)


def _unavailable(reason):
  """Skips where the cluster cannot start (not root, SLURM not installed); fails instead under
  PIX2PIX_REQUIRE_SLURM=1, which CI (.ci/run) sets after installing SLURM."""
  if os.environ.get("PIX2PIX_REQUIRE_SLURM") == "1":
    pytest.fail(f"PIX2PIX_REQUIRE_SLURM=1 but {reason}")
  pytest.skip(reason)


@contextlib.contextmanager
def _locked(path):
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
  """A running single-node cluster; SLURM_CONF points the client commands at it. pytest-xdist
  workers share one: the first to need it starts it, the last to finish stops it."""
  if os.geteuid() != 0:
    _unavailable("a local SLURM cluster needs root (slurmd starts jobs as their users)")
  if not shutil.which("slurmctld") or not shutil.which("sbatch"):
    _unavailable("SLURM is not installed (as root: bash .ci/slurm_cluster.sh install)")
  root = tmp_path_factory.getbasetemp()
  shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
  directory, users = str(shared / "slurm"), shared / "slurm.users"
  with _locked(shared / "slurm.lock"):
    count = int(users.read_text()) if users.exists() else 0
    if count == 0:
      started = subprocess.run(
        ["bash", SCRIPT, "start", directory], capture_output=True, text=True, timeout=120
      )
      if started.returncode != 0:
        subprocess.run(["bash", SCRIPT, "stop", directory], timeout=120)
        _unavailable(f"the SLURM cluster did not start: {started.stderr.strip()[-500:]}")
    users.write_text(str(count + 1))
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("SLURM_CONF", os.path.join(directory, "slurm.conf"))
    yield directory
  with _locked(shared / "slurm.lock"):
    count = int(users.read_text()) - 1
    users.write_text(str(count))
    if count == 0:
      subprocess.run(["bash", SCRIPT, "stop", directory], timeout=120)


def _slurm(*args, env=None):
  result = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
  assert result.returncode == 0, result.stderr
  return result.stdout


def _state(job):
  return slurm.job_states([job]).get(job)


def _wait_for(predicate, what, timeout=900, every=0.3):
  deadline = time.time() + timeout
  while not predicate():
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(every)


def _jobs(workdir):
  with open(workdir / "slurm_jobs.json") as f:
    return json.load(f)["jobs"]


def test_sweep_submits_returns_then_collects_and_resubmits_failures(cluster, tmp_path, capsys):
  overrides = {**TINY, "data.folder": str(tmp_path / "no_such_folder")}
  # "samples" trains; "folder" fails (the folder does not exist).
  path = write_sweep(tmp_path / "tiny.py", {"data.source": ["samples", "folder"]}, overrides)
  root = tmp_path / "runs"
  # --hold: the jobs wait in the queue until released, so the second call below finds them there.
  argv = [path, "--output", str(root), "--launcher", "slurm", "--cpus-per-run", "1"]
  argv += ["--time", "15:00", "--sbatch-arg=--hold"]
  good, bad = root / "tiny" / "source=samples", root / "tiny" / "source=folder"

  assert sweep.main(argv) == 0
  out = capsys.readouterr().out
  assert out.count("submitted (job") == 2 and "run the same command again" in out
  (good_job,), (bad_job,) = _jobs(good), _jobs(bad)
  script = (good / "slurm_job.sh").read_text()
  for option in ("--requeue", "--cpus-per-task=1", "--time=15:00", "--signal=B:USR1@120", "--hold"):
    assert f"#SBATCH {option}\n" in script
  assert "--config.data.source=samples" in script and f"--output={good}/train.log" in script

  # Again while the jobs are queued: nothing is submitted twice.
  assert sweep.main(argv) == 0
  out = capsys.readouterr().out
  assert f"source=samples: pending (job {good_job})" in out
  assert f"source=folder: pending (job {bad_job})" in out and "submitted" not in out
  assert _jobs(good) == [good_job] and _jobs(bad) == [bad_job]

  _slurm("scontrol", "release", f"{good_job},{bad_job}")
  _wait_for(lambda: not slurm.is_active(_state(good_job)), "the training job")
  _wait_for(lambda: not slurm.is_active(_state(bad_job)), "the failing job")
  assert _state(good_job) == "COMPLETED" and _state(bad_job) == "FAILED"
  assert (good / "DONE").exists() and not (bad / "DONE").exists()
  assert "no_such_folder" in (bad / "train.log").read_text()

  # Collect: the finished run is reported, the failed one is submitted again.
  assert sweep.main(argv) == 0
  out = capsys.readouterr().out
  assert _jobs(good) == [good_job]
  assert len(_jobs(bad)) == 2 and _jobs(bad)[0] == bad_job
  new_job = _jobs(bad)[1]
  assert "source=samples: done" in out
  assert f"source=folder: submitted (job {new_job}; job {bad_job} ended FAILED)" in out
  with open(root / "tiny" / "results.csv") as f:
    rows = {row["run"]: row for row in csv.DictReader(f)}
  assert rows["source=samples"]["status"] == "done" and int(rows["source=samples"]["steps"]) == 2
  assert np.isfinite(float(rows["source=samples"]["final_ciede2000"]))
  assert float(rows["source=samples"]["wall_time_s"]) > 0
  assert rows["source=folder"]["status"] == f"submitted (job {new_job}; job {bad_job} ended FAILED)"
  _slurm("scancel", new_job)
  assert slurm.job_states(["999999"]) == {}  # unknown to SLURM: over


@contextlib.contextmanager
def _freeze_and_signal(job):
  """SIGUSR1 to the batch shell of `job` (what --signal=B:USR1@N does before the time limit)
  while all its processes are stopped, so it lands mid-run whatever the machine's speed
  (`scontrol suspend` would stop them too, but SLURM does not signal a suspended job)."""
  pids = [int(line.split()[0]) for line in _slurm("scontrol", "listpids", job).splitlines()[1:]]
  for pid in pids:
    os.kill(pid, signal.SIGSTOP)
  try:
    yield
    _slurm("scancel", "--batch", "--signal=USR1", job)
  finally:
    for pid in pids:
      os.kill(pid, signal.SIGCONT)


def test_usr1_requeues_the_job_which_resumes_to_the_uninterrupted_result(cluster, tmp_path):
  photos = write_photo_folder(tmp_path / "photos")
  total = 8
  straight = tmp_path / "straight"
  result = subprocess.run(
    main_command(straight, photos, total),
    env=subprocess_env(),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 0, result.stderr

  workdir = tmp_path / "requeued"
  workdir.mkdir()
  command = main_command(workdir, photos, total, "--config.checkpoint_every_steps=1")
  script = workdir / "job.sh"
  script.write_text(
    slurm.batch_script(
      command, name="requeue", workdir=str(workdir), cwd=REPO, res=slurm.Resources(cpus=1)
    )
  )
  # The straight run's environment (one CPU device), so the two runs compute the same program.
  env = subprocess_env(SLURM_CONF=os.environ["SLURM_CONF"])
  job = _slurm("sbatch", "--parsable", str(script), env=env).strip()
  steps = lambda: checkpoint.latest_step(str(workdir)) or 0  # noqa: E731
  _wait_for(lambda: steps() >= 2 or not slurm.is_active(_state(job)), "checkpoint 2", every=0.1)
  with _freeze_and_signal(job):
    stopped_before = steps()
    assert stopped_before < total - 1, "the job finished before it could be stopped"

  _wait_for(lambda: (workdir / "DONE").exists(), "the requeued job to finish")
  _wait_for(lambda: _state(job) == "COMPLETED", "the job to complete")
  attempts = [line.split() for line in (workdir / "slurm_attempts").read_text().splitlines()]
  # job id, restart count, start, end, exit status, requeued
  assert [(a[0], a[1], a[4], a[5]) for a in attempts] == [
    (job, "0", "0", "1"),
    (job, "1", "0", "0"),
  ]
  log = (workdir / "train.log").read_text()
  stopped = int(log.split("stopped at step ")[1].split()[0])
  assert stopped_before <= stopped < total
  assert f"resumed from step {stopped}" in log and f"requeueing job {job}" in log
  a = checkpoint.restore_generator(str(workdir))[1]
  b = checkpoint.restore_generator(str(straight))[1]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def test_scancel_cancels_a_run_without_requeueing_or_marking_it_done(cluster, tmp_path):
  # A stand-in for the training: saves nothing, but stops and exits 0 on SIGTERM as the training
  # does (SLURM's SIGTERM and the one the script passes on arrive together).
  command = [
    sys.executable,
    "-c",
    "import signal, time\n"
    "stop = []\n"
    "signal.signal(signal.SIGTERM, lambda *a: stop.append(1))\n"
    "print('ready', flush=True)\n"
    "while not stop:\n"
    "  time.sleep(0.5)",
  ]
  script = tmp_path / "job.sh"
  script.write_text(
    slurm.batch_script(
      command, name="cancel", workdir=str(tmp_path), cwd=REPO, res=slurm.Resources()
    )
  )
  job = _slurm("sbatch", "--parsable", str(script)).strip()
  log = tmp_path / "train.log"
  _wait_for(lambda: log.exists() and "ready" in log.read_text(), "the job to start")
  _slurm("scancel", job)
  _wait_for(lambda: (tmp_path / "slurm_attempts").exists(), "the job to end")
  time.sleep(12)  # longer than the test cluster's requeue delay (cred_expire=10)
  assert _state(job) == "CANCELLED"
  assert (tmp_path / "slurm_attempts").read_text().split()[4:] == ["0", "0"]  # exit 0, no requeue
  assert not (tmp_path / "DONE").exists()
  assert "stopped by SIGTERM" in log.read_text()


def test_srun_two_tasks_match_one_process(cluster, tmp_path):
  driver = os.path.join(REPO, "tests", "distributed_driver.py")
  one, two = tmp_path / "one.npz", tmp_path / "two.npz"
  # One process with 2 devices against 2 SLURM tasks with one device each: the same global batch.
  result = subprocess.run(
    [sys.executable, driver, "--out", str(one)],
    env=subprocess_env(2),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 0, result.stdout + result.stderr
  result = subprocess.run(
    [
      "srun",
      "--ntasks=2",
      "--cpus-per-task=1",
      sys.executable,
      driver,
      "--out",
      str(two),
      "--cluster",
    ],
    env=subprocess_env(1, SLURM_CONF=os.environ["SLURM_CONF"]),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 0, result.stdout + result.stderr
  # The tests' warm compilation cache is turned off in both (distributed.initialize).
  assert "process 0 done, 2 devices, cache off" in result.stdout
  assert "process 1 done, 2 devices, cache off" in result.stdout
  a, b = np.load(one), np.load(two)
  assert len(a.files) == len(b.files) > 10
  for name in a.files:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_sbatch_script_trains_two_tasks_as_one_program_and_requeues(cluster, tmp_path):
  folder = write_photo_folder(tmp_path / "photos")
  workdir = tmp_path / "run"
  total = 8
  output = tmp_path / "slurm.out"
  env = subprocess_env(
    1,
    SLURM_CONF=os.environ["SLURM_CONF"],
    PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
  )
  train = main_command(workdir, folder, total, "--config.checkpoint_every_steps=1")
  flags = train[train.index(f"--workdir={workdir}") + 1 :]
  # The README's command on one node: 2 tasks of one CPU each instead of nodes with GPUs.
  sbatch = ["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1"]
  sbatch += [f"--output={output}", os.path.join(REPO, "slurm", "train.sbatch")]
  job = _slurm(*sbatch, f"{REPO}/configs/default.py", str(workdir), *flags, env=env).strip()
  steps = lambda: checkpoint.latest_step(str(workdir)) or 0  # noqa: E731
  _wait_for(lambda: steps() >= 2 or not slurm.is_active(_state(job)), "checkpoint 2", every=0.1)
  with _freeze_and_signal(job):
    stopped_before = steps()
    assert stopped_before < total - 1, "the job finished before it could be stopped"
  _wait_for(lambda: _state(job) == "COMPLETED" and steps() == total, "the requeued job")
  log = output.read_text()
  # Without --distributed, the two tasks formed one program, twice (before and after requeue).
  assert log.count("2 SLURM tasks in this job step: one program over them") == 4, log
  assert log.count("process 1 of 2, 1 local devices of 2") == 2, log
  stopped = int(log.split("stopped at step ")[1].split()[0])
  assert stopped_before <= stopped < total and f"resumed from step {stopped}" in log
  assert log.count(f"step {total}/{total} (") == 1  # only process 0 reports progress
  assert sorted(os.listdir(workdir / "checkpoints")) == [str(total)]


def test_without_slurm_commands_the_sweep_fails_in_one_line(tmp_path, monkeypatch, capsys):
  path = write_sweep(tmp_path / "tiny.py", {"loss.gan": ["hinge"]}, TINY)
  monkeypatch.setenv("PATH", str(tmp_path / "empty"))
  assert (
    exit_status(sweep.main, [path, "--output", str(tmp_path / "runs"), "--launcher", "slurm"]) == 1
  )
  err = capsys.readouterr().err
  assert err == "error: sbatch not found: --launcher slurm needs SLURM's commands on PATH\n"


def test_colorize_array_writes_every_output_once_each_by_one_task(cluster, tmp_path):
  workdir = tiny_generator_workdir(tmp_path / "model")
  src = write_photo_folder(tmp_path / "in", n=3, size=(24, 16))
  (src / "sub").mkdir()
  Image.new("L", (20, 12), 90).save(src / "sub" / "gray.jpg")
  make_clip(str(src / "a.mp4"), seconds=0.4, audio="aac")
  make_clip(str(src / "sub" / "b.mkv"), seconds=0.4)
  expected = {"0.png", "1.png", "2.png", "sub/gray.jpg", "a.mp4", "sub/b.mkv"}
  out, logs = tmp_path / "out", tmp_path / "logs"
  logs.mkdir()
  env = subprocess_env(
    1,
    SLURM_CONF=os.environ["SLURM_CONF"],
    PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
  )
  # The README's recipe, on ids 1-3 (SLURM_ARRAY_TASK_MIN is 1): shards 0, 1 and 2 of 3.
  sbatch = ["sbatch", "--parsable", "--array=1-3", "--cpus-per-task=1"]
  sbatch += [f"--output={logs}/task-%a.out", os.path.join(REPO, "slurm", "colorize.sbatch")]
  colorize = ["--workdir", workdir, str(src), "-o", str(out), "--skip-existing", "--no-progress"]
  job = _slurm(*sbatch, *colorize, env=env).strip()
  tasks = [f"{job}_{i}" for i in (1, 2, 3)]

  def ended():
    states = slurm.job_states([job])
    return all(task in states and not slurm.is_active(states[task]) for task in tasks)

  _wait_for(ended, "the array's tasks")
  states = slurm.job_states([job])
  written = {}  # output -> the array task whose log names it
  shards = set()
  for i in (1, 2, 3):
    log = (logs / f"task-{i}.out").read_text()
    assert states[f"{job}_{i}"] == "COMPLETED", log
    shard_line = next(line for line in log.splitlines() if line.startswith("shard "))
    shards.add(shard_line.split()[1])
    assert f"(SLURM array task {i}, {i} of 3): 2 of 6 inputs" in shard_line, log
    assert "done: 2 of 2 inputs colourised" in log, log
    for line in log.splitlines():
      if " -> " in line:
        dst = os.path.relpath(line.split(" -> ")[1].split(": ")[0], out)
        assert dst not in written, f"{dst} written by tasks {written[dst]} and {i}"
        written[dst] = i
  assert shards == {"0/3", "1/3", "2/3"}
  assert set(written) == expected
  found = {os.path.relpath(os.path.join(d, f), out) for d, _, names in os.walk(out) for f in names}
  assert found == expected  # and no temporary file left
  assert probe.count_frames(str(out / "a.mp4")) == 10
  assert probe.count_frames(str(out / "sub" / "b.mkv")) == 10


def test_colorize_srun_tasks_share_the_inputs(cluster, tmp_path):
  # One process per GPU is the same: each task of `srun --ntasks=N` takes its shard (here 2 tasks
  # of one CPU each, with the batch shell's SLURM variables of an --ntasks=2 job around them).
  workdir = tiny_generator_workdir(tmp_path / "model")
  src = write_photo_folder(tmp_path / "in", n=5, size=(24, 16))
  out = tmp_path / "out"
  env = subprocess_env(1, SLURM_CONF=os.environ["SLURM_CONF"])
  command = [sys.executable, "-m", "pix2pix_jax.colorize.main", "--workdir", workdir, str(src)]
  command += ["-o", str(out), "--no-progress"]
  result = subprocess.run(
    ["srun", "--ntasks=2", "--cpus-per-task=1", "--label", *command],
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 0, result.stdout + result.stderr
  lines = result.stdout.splitlines()  # "0: ..." and "1: ..." (--label)
  assert "0: shard 0/2 (SLURM task 0 of 2): 3 of 5 inputs" in lines, result.stdout
  assert "1: shard 1/2 (SLURM task 1 of 2): 2 of 5 inputs" in lines, result.stdout
  written = [line.split(" -> ")[1].split(":")[0] for line in lines if " -> " in line]
  assert sorted(written) == sorted(str(out / f"{i}.png") for i in range(5))
  assert sorted(os.listdir(out)) == [f"{i}.png" for i in range(5)]
