"""pix2pix-sweep: launch training runs, skip finished ones, tabulate and plot results.

The sweep file's format, the runs' folders and the reports: docs/sweeps.md.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from pix2pix_jax import cli, files
from pix2pix_jax.tools.sweep import report, slurm, spec


def flag(field: str, value: Any) -> str:
  """`--config.field=value` as ml_collections' config flags parse it."""
  if value is None:
    raise spec.SweepError(f"cannot set {field} to None from the command line")
  return f"--config.{field}={value!r}" if isinstance(value, float) else f"--config.{field}={value}"


def command(sweep: spec.Sweep, run: spec.Run) -> list[str]:
  """The training command line of one run."""
  flags = [flag(f, v) for f, v in run.overrides.items()]
  return [
    sys.executable,
    "-m",
    "pix2pix_jax.train.main",
    f"--config={sweep.base_config}",
    f"--workdir={run.workdir}",
    *flags,
  ]


def _write_json(path: str, value: Any) -> None:
  files.write_atomic(path, json.dumps(value, indent=2, default=str) + "\n")


def _prepare(sweep: spec.Sweep, run: spec.Run) -> list[str]:
  """Creates the run's workdir with its config.json; returns its training command."""
  os.makedirs(run.workdir, exist_ok=True)
  cmd = command(sweep, run)
  _write_json(
    os.path.join(run.workdir, "config.json"),
    {"command": cmd, "overrides": run.overrides, "config": run.config.to_dict()},
  )
  return cmd


def _start(sweep: spec.Sweep, run: spec.Run) -> tuple[subprocess.Popen, Any, float]:
  cmd = _prepare(sweep, run)
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  log = open(os.path.join(run.workdir, "train.log"), "a")  # noqa: SIM115 - closed on exit
  log.write(f"$ {' '.join(cmd)}\n")
  log.flush()
  process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
  return process, log, time.time()


def launch(sweep: spec.Sweep, parallel: int = 1, echo=print) -> dict[str, str]:
  """Runs every unfinished run, `parallel` at a time; returns {run name: status}."""
  status = {}
  pending = []
  for run in sweep.runs:
    if spec.is_done(run):
      status[run.name] = "done"
      echo(f"[{sweep.name}] {run.name}: already finished, skipped")
    else:
      pending.append(run)
  active: dict[str, tuple[spec.Run, subprocess.Popen, Any, float]] = {}
  try:
    while pending or active:
      while pending and len(active) < max(1, parallel):
        run = pending.pop(0)
        process, log, start = _start(sweep, run)
        active[run.name] = (run, process, log, start)
        echo(f"[{sweep.name}] {run.name}: started (log {os.path.join(run.workdir, 'train.log')})")
      time.sleep(0.5)
      for name, (run, process, log, start) in list(active.items()):
        code = process.poll()
        if code is None:
          continue
        log.close()
        del active[name]
        wall = time.time() - start
        if code == 0:
          _write_json(os.path.join(run.workdir, "DONE"), {"wall_time_s": wall, "time": time.time()})
          status[name] = "done"
        else:
          status[name] = f"failed (exit {code})"
        echo(f"[{sweep.name}] {name}: {status[name]} after {wall:.0f} s")
  except KeyboardInterrupt:
    for _run, process, log, _start_time in active.values():
      process.terminate()  # training checkpoints on SIGTERM; rerunning the sweep resumes it
      process.wait()
      log.close()
    raise
  return status


def _slurm_jobs(run: spec.Run) -> list[str]:
  path = os.path.join(run.workdir, "slurm_jobs.json")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)["jobs"]


def submit_slurm(sweep: spec.Sweep, resources: slurm.Resources, echo=print) -> dict[str, str]:
  """Submits every run that is neither finished nor queued/running; returns {run: status}."""
  jobs = {run.name: _slurm_jobs(run) for run in sweep.runs}
  states = slurm.job_states([ids[-1] for ids in jobs.values() if ids])
  status = {}
  for run in sweep.runs:
    last = jobs[run.name][-1] if jobs[run.name] else None
    state = states.get(last)
    if spec.is_done(run):
      status[run.name] = "done"
    elif slurm.is_active(state):
      status[run.name] = f"{state.lower()} (job {last})"
    else:
      cmd = _prepare(sweep, run)
      script = os.path.join(run.workdir, "slurm_job.sh")
      files.write_atomic(
        script,
        slurm.batch_script(
          cmd, name=f"{sweep.name}/{run.name}", workdir=run.workdir, cwd=os.getcwd(), res=resources
        ),
      )
      job = slurm.submit(script)
      _write_json(os.path.join(run.workdir, "slurm_jobs.json"), {"jobs": [*jobs[run.name], job]})
      ended = f"ended {state}" if state else "left the queue unfinished"
      previous = f"; job {last} {ended}" if last else ""
      status[run.name] = f"submitted (job {job}{previous})"
    echo(f"[{sweep.name}] {run.name}: {status[run.name]}")
  return status


def _parse_override(text: str) -> tuple[str, str]:
  """`--config.field=value` -> (field, value as text)."""
  if not text.startswith("--config.") or "=" not in text:
    raise spec.SweepError(f"unexpected argument {text!r} (overrides are --config.field=value)")
  field, value = text[len("--config.") :].split("=", 1)
  return field.strip(), value


def main(argv: list[str] | None = None) -> int:
  """`pix2pix-sweep`: run a sweep definition and write its results table and plots."""
  parser = argparse.ArgumentParser(prog="pix2pix-sweep", description=__doc__.split("\n")[0])
  parser.add_argument("sweep", help="sweep definition (a Python file with get_sweep())")
  parser.add_argument("--output", default="runs", help="runs go to OUTPUT/<sweep>/<run>")
  parser.add_argument("--parallel", type=int, default=1, help="runs at once (subprocesses)")
  parser.add_argument("--scale", default=None, help="a named scale of the sweep, e.g. 'full'")
  parser.add_argument("--dry-run", action="store_true", help="print the runs, launch nothing")
  parser.add_argument(
    "--collect-only", action="store_true", help="only (re)write the reports from existing runs"
  )
  parser.add_argument(
    "--launcher",
    choices=("local", "slurm"),
    default="local",
    help="local: subprocesses here, until done; slurm: submit batch jobs and return",
  )
  slurm_args = parser.add_argument_group("SLURM (--launcher slurm)")
  slurm_args.add_argument("--partition", default=None, help="sbatch --partition")
  slurm_args.add_argument("--time", default=None, help="sbatch --time per run, e.g. 4:00:00")
  slurm_args.add_argument("--gpus-per-run", type=int, default=0, help="sbatch --gpus")
  slurm_args.add_argument("--cpus-per-run", type=int, default=None, help="sbatch --cpus-per-task")
  slurm_args.add_argument(
    "--sbatch-arg",
    action="append",
    default=[],
    help="another sbatch option for every run (repeatable), e.g. --sbatch-arg=--qos=low",
  )
  parser.epilog = "--config.field=value (repeatable) overrides a field in every run."
  args, rest = parser.parse_known_args(argv)
  cli.configure()
  extra = dict(_parse_override(o) for o in rest)
  sweep = spec.load_sweep(args.sweep, root=args.output, scale=args.scale, extra_overrides=extra)
  print(f"[{sweep.name}] {len(sweep.runs)} runs in {sweep.directory}")
  if args.dry_run:
    for run in sweep.runs:
      state = "finished" if spec.is_done(run) else "to run"
      print(f"{run.name} ({state}):\n  {' '.join(command(sweep, run))}")
    return 0
  if args.collect_only:
    statuses = {}
  elif args.launcher == "slurm":
    resources = slurm.Resources(
      partition=args.partition,
      time=args.time,
      gpus=args.gpus_per_run,
      cpus=args.cpus_per_run,
      extra=tuple(args.sbatch_arg),
    )
    statuses = submit_slurm(sweep, resources)
  else:
    statuses = launch(sweep, args.parallel)
  rows = report.collect(sweep, statuses)
  for path in report.write_reports(sweep, rows):
    print(f"wrote {path}")
  waiting = [name for name, s in statuses.items() if s != "done"]
  if args.launcher == "slurm" and waiting:
    print(
      f"[{sweep.name}] {len(waiting)} runs queued or running on SLURM; run the same command "
      "again to collect them (and resubmit any that fail)"
    )
  failed = [name for name, s in statuses.items() if s.startswith("failed")]
  if failed:
    print(f"error: {len(failed)} runs failed: {', '.join(failed)} (see their train.log)")
    return 1
  return 0


def run() -> None:
  """Console entry point (pix2pix-sweep)."""
  cli.run(main)


if __name__ == "__main__":
  run()
