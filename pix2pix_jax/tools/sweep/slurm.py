"""SLURM for sweeps: one batch script per run, `sbatch` to submit it, `squeue` for its state.

The script passes SIGUSR1 on to the training as SIGTERM and requeues its job once a checkpoint is
saved; why USR1, and how reruns find finished jobs: docs/reliability.md ("Several hosts and SLURM").
"""

import dataclasses
import re
import shlex
import shutil
import subprocess

from pix2pix_jax import errors

# squeue states of jobs that are over; every other state (PENDING, RUNNING, REQUEUED,
# COMPLETING, SUSPENDED, ...) means the job may still run, so its run is not submitted again.
ENDED_STATES = frozenset(
  {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
  }
)


class SlurmError(errors.UserError, RuntimeError):
  """A SLURM command is missing or failed (message: the command and its error)."""


@dataclasses.dataclass(frozen=True)
class Resources:
  """What each run asks SLURM for (None: the cluster's default)."""

  partition: str | None = None
  time: str | None = None  # sbatch --time, e.g. "4:00:00"
  gpus: int = 0
  cpus: int | None = None
  signal_seconds: int = 120  # SIGUSR1 this long before the time limit: checkpoint, requeue
  extra: tuple[str, ...] = ()  # further sbatch options, e.g. ("--account=x", "--qos=y")


def job_name(text: str) -> str:
  return re.sub(r"[^\w.=+-]", "_", text)


def batch_script(command: list[str], *, name: str, workdir: str, cwd: str, res: Resources) -> str:
  """The sbatch script of one run: its output is appended to `workdir`/train.log."""
  options = [
    f"--job-name={job_name(name)}",
    f"--output={workdir}/train.log",
    "--open-mode=append",
    f"--chdir={cwd}",
    "--ntasks=1",
    "--requeue",
  ]
  if res.cpus:
    options.append(f"--cpus-per-task={res.cpus}")
  if res.gpus:
    options.append(f"--gpus={res.gpus}")
  if res.partition:
    options.append(f"--partition={res.partition}")
  if res.time:
    options += [f"--time={res.time}", f"--signal=B:USR1@{res.signal_seconds}"]
  options += list(res.extra)
  header = "\n".join(f"#SBATCH {shlex.quote(o)}" for o in options)
  return f"""#!/bin/bash
{header}
# Written by pix2pix-sweep. SIGUSR1 (the time limit is near): the training saves a checkpoint
# and exits, and the job requeues itself. SIGTERM (scancel, preemption): the training saves a
# checkpoint and exits, and SLURM decides whether the job comes back.
workdir={shlex.quote(workdir)}
echo "== job $SLURM_JOB_ID, start ${{SLURM_RESTART_COUNT:-0}}, on $(hostname) at $(date -Is)"
requeue=0
terminated=0
trap 'requeue=1; kill -TERM "$child" 2>/dev/null' USR1
trap 'terminated=1; kill -TERM "$child" 2>/dev/null' TERM
start=$(date +%s)
{shlex.join(command)} &
child=$!
wait "$child"
while kill -0 "$child" 2>/dev/null; do wait "$child"; done  # a trapped signal ends `wait` early
wait "$child"
code=$?
# One line per attempt: job, restart count, start and end (epoch s), exit status, requeued.
echo "$SLURM_JOB_ID ${{SLURM_RESTART_COUNT:-0}} $start $(date +%s) $code $requeue" \\
  >>"$workdir/slurm_attempts"
if [ "$requeue" = 1 ]; then
  echo "== stopped by SIGUSR1 (exit $code): requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID" || echo "== scontrol requeue failed; rerun pix2pix-sweep"
  exit "$code"
fi
if [ "$terminated" = 1 ]; then
  echo "== stopped by SIGTERM (exit $code)"
  exit 143
fi
if [ "$code" = 0 ]; then
  wall=$(awk '{{s += $4 - $3}} END {{print s}}' "$workdir/slurm_attempts")
  printf '{{"wall_time_s": %s, "time": %s, "slurm_job_id": "%s"}}\\n' \\
    "$wall" "$(date +%s)" "$SLURM_JOB_ID" >"$workdir/DONE.tmp"
  mv "$workdir/DONE.tmp" "$workdir/DONE"
fi
exit "$code"
"""


def _run(args: list[str]) -> subprocess.CompletedProcess:
  if shutil.which(args[0]) is None:
    raise SlurmError(f"{args[0]} not found: --launcher slurm needs SLURM's commands on PATH")
  return subprocess.run(args, capture_output=True, text=True, timeout=120)


def _failure(args: list[str], result: subprocess.CompletedProcess) -> SlurmError:
  lines = (result.stderr or result.stdout).strip().splitlines()
  return SlurmError(
    f"{' '.join(args[:2])} failed: {lines[-1] if lines else f'exit {result.returncode}'}"
  )


def submit(script_path: str) -> str:
  """Submits a batch script; returns the job id."""
  args = ["sbatch", "--parsable", script_path]
  result = _run(args)
  if result.returncode != 0:
    raise _failure(args, result)
  return result.stdout.strip().split(";")[0]


def job_states(job_ids: list[str]) -> dict[str, str]:
  """{job id: squeue state} of the jobs SLURM still knows (finished jobs stay for MinJobAge)."""
  if not job_ids:
    return {}
  args = ["squeue", "--noheader", "--states=all", f"--jobs={','.join(job_ids)}", "--format=%i|%T"]
  result = _run(args)
  if result.returncode != 0:
    if "Invalid job id" in result.stderr:  # none of them is known any more
      return {}
    raise _failure(args, result)
  states = {}
  for line in result.stdout.splitlines():
    job, _, state = line.strip().partition("|")
    states[job] = state
  return states


def is_active(state: str | None) -> bool:
  """Whether a job in this squeue state may still run (None: unknown to SLURM, so over)."""
  return state is not None and state not in ENDED_STATES
