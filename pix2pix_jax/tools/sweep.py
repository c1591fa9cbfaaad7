"""Hyperparameter sweeps: launch training runs, skip finished ones, tabulate and plot results.

``pix2pix-sweep experiments/gan_loss.py [--parallel N] [--dry-run] [--output DIR]
[--scale full] [--config.field=value ...] [--collect-only]``

A sweep definition is a Python file whose ``get_sweep()`` returns a dict:

- ``name``: the sweep's name (default: the file's name); runs go to ``<root>/<name>/``.
- ``base_config``: a config file, relative to the sweep file (or absolute).
- ``overrides``: fixed ``{"dotted.field": value}`` for every run.
- ``grid``: ``{"dotted.field": [values]}``; the runs are the Cartesian product.
- ``random``: ``{"dotted.field": spec}`` with ``num_trials`` and ``seed``; a spec is
  ``{"uniform": [lo, hi]}``, ``{"log_uniform": [lo, hi]}``, ``{"int": [lo, hi]}`` (inclusive) or
  ``{"choice": [values]}``. With a grid as well, every grid point gets every random trial.
- ``metric``: the eval metric reported as final and best (default ``"ciede2000"``; lower is
  better for distances and losses, higher otherwise).
- ``scales``: optional ``{"full": {...}}``: ``--scale full`` replaces the top-level keys with these
  (e.g. another ``base_config`` and ``overrides``) and names the sweep ``<name>-full``.
- ``description``: free text, copied into results.md.

Every run gets ``<output>/<sweep>/<run>/`` (the run name is made from its swept values, e.g.
``gan=hinge``) holding ``config.json`` (the resolved config and the overrides), ``train.log`` and
the training outputs. Runs are ``pix2pix-train --config BASE --workdir W
--config.field=value ...`` subprocesses, one at a time or ``--parallel N`` at once. A run that
exits cleanly gets a ``DONE`` marker (JSON with its wall time); on restart, runs with ``DONE`` or a
checkpoint at ``num_train_steps`` are skipped and unfinished ones resume from their checkpoints.
Every field name and value is checked against the base config before anything is launched.

Results are read back from each run's TensorBoard events (``eval/<metric>`` scalars, the
``images_per_sec`` throughput) and written to ``<output>/<sweep>/results.csv``, ``results.md``,
``<metric>_vs_params.png`` (final and best metric against each swept field) and
``<metric>_curves.png`` (the metric against the training step, one line per run).
"""

import argparse
import csv
import dataclasses
import glob
import importlib.util
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from typing import Any

import ml_collections
import numpy as np

from pix2pix_jax import cli, config_lib, errors, files, metrics

DEFAULT_METRIC = "ciede2000"
SWEEP_KEYS = {
  "name",
  "base_config",
  "overrides",
  "grid",
  "random",
  "num_trials",
  "seed",
  "metric",
  "scales",
  "description",
}
DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")


class SweepError(errors.UserError, ValueError):
  """The sweep definition is unusable; raised before any run is launched."""


@dataclasses.dataclass
class Run:
  name: str
  params: dict[str, Any]  # the swept values of this run
  overrides: dict[str, Any]  # fixed and swept overrides together
  workdir: str
  config: ml_collections.ConfigDict


@dataclasses.dataclass
class Sweep:
  name: str
  path: str
  base_config: str
  metric: str
  swept: list[str]
  runs: list[Run]
  directory: str
  description: str = ""


# --------------------------------------------------------------------------------------------
# Loading a definition.


def read_definition(path: str) -> dict[str, Any]:
  """`get_sweep()` of the sweep file at `path`."""
  if not os.path.isfile(path):
    raise SweepError(f"{path}: sweep file not found")
  spec = importlib.util.spec_from_file_location("pix2pix_sweep_definition", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise SweepError(f"{path}: line {e.lineno}: {e.msg}") from e
  if not hasattr(module, "get_sweep"):
    raise SweepError(f"{path}: defines no get_sweep()")
  definition = module.get_sweep()
  if not isinstance(definition, dict):
    raise SweepError(f"{path}: get_sweep() must return a dict, got {type(definition).__name__}")
  return definition


def resolve_path(relative: str, sweep_path: str) -> str:
  """`relative` taken from the sweep file's folder (an absolute path stays as it is)."""
  folder = os.path.dirname(os.path.abspath(sweep_path))
  candidate = os.path.abspath(os.path.join(folder, os.path.expanduser(relative)))
  if not os.path.isfile(candidate):
    raise SweepError(f"{sweep_path}: base_config {relative!r} not found ({candidate})")
  return candidate


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
  """The Cartesian product of the grid, in the order written (last field fastest)."""
  for field, values in grid.items():
    if not isinstance(values, (list, tuple)) or not values:
      raise SweepError(f"grid[{field!r}] must be a non-empty list of values")
  fields = list(grid)
  return [dict(zip(fields, combo, strict=True)) for combo in itertools.product(*grid.values())]


def sample(field: str, spec: Any, rng: np.random.Generator) -> Any:
  """One draw from a random-search distribution spec (see the module docstring)."""
  if isinstance(spec, (list, tuple)):
    spec = {"choice": spec}
  if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
    raise SweepError(f"random[{field!r}]={spec!r} is not one of {{{'|'.join(DISTRIBUTIONS)}: ...}}")
  ((kind, args),) = spec.items()
  if kind == "choice":
    return args[int(rng.integers(len(args)))]
  lo, hi = args
  if kind == "uniform":
    return float(rng.uniform(lo, hi))
  if kind == "log_uniform":
    if lo <= 0 or hi <= 0:
      raise SweepError(f"random[{field!r}]: log_uniform bounds must be positive, got {args}")
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
  return int(rng.integers(lo, hi + 1))


def random_points(random: dict[str, Any], num_trials: int, seed: int) -> list[dict[str, Any]]:
  rng = np.random.default_rng(seed)
  return [{f: sample(f, spec, rng) for f, spec in random.items()} for _ in range(num_trials)]


def _format_value(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def run_name(params: dict[str, Any], trial: int | None = None) -> str:
  """A folder name from the swept values: "gan=hinge,l1_weight=10" ("base" if none)."""
  leaves = [f.split(".")[-1] for f in params]
  keys = [f if leaves.count(f.split(".")[-1]) > 1 else f.split(".")[-1] for f in params]
  parts = [f"{k}={_format_value(v)}" for k, v in zip(keys, params.values(), strict=True)]
  if trial is not None:
    parts.insert(0, f"trial{trial:02d}")
  return re.sub(r"[^\w.,=+-]", "_", ",".join(parts)) or "base"


def load_sweep(
  path: str,
  *,
  root: str = "runs",
  scale: str | None = None,
  extra_overrides: dict[str, Any] | None = None,
) -> Sweep:
  """Reads and checks a sweep definition: every run's config is built and validated."""
  definition = read_definition(path)
  if scale:
    scales = definition.get("scales") or {}
    if scale not in scales:
      raise SweepError(f"{path}: no scale {scale!r} (has: {', '.join(scales) or 'none'})")
    definition = {**definition, **scales[scale]}
  unknown = set(definition) - SWEEP_KEYS
  if unknown:
    raise SweepError(f"{path}: unknown sweep keys {sorted(unknown)} (known: {sorted(SWEEP_KEYS)})")
  if "base_config" not in definition:
    raise SweepError(f"{path}: get_sweep() needs a 'base_config'")
  name = definition.get("name") or os.path.splitext(os.path.basename(path))[0]
  if scale:
    name = f"{name}-{scale}"
  base_path = resolve_path(definition["base_config"], path)
  base = config_lib.load(base_path)
  fixed = {**(definition.get("overrides") or {}), **(extra_overrides or {})}
  grid = definition.get("grid") or {}
  random = definition.get("random") or {}
  points = grid_points(grid) if grid else [{}]
  trials = None
  if random:
    num_trials = int(definition.get("num_trials", 0))
    if num_trials <= 0:
      raise SweepError(f"{path}: 'random' needs a positive 'num_trials'")
    draws = random_points(random, num_trials, int(definition.get("seed", 0)))
    points = [{**p, **d} for p in points for d in draws]
    trials = [i % num_trials for i in range(len(points))]
  directory = os.path.abspath(os.path.join(root, name))
  runs = []
  for i, params in enumerate(points):
    rname = run_name(params, None if trials is None else trials[i])
    overrides = {**fixed, **params}
    try:
      config = config_lib.apply_overrides(base, overrides)
      config_lib.validate(config)
    except (KeyError, TypeError, ValueError) as e:
      message = e.args[0] if isinstance(e, KeyError) and e.args else e
      raise SweepError(f"{path}: run {rname}: {message}") from e
    runs.append(Run(rname, params, overrides, os.path.join(directory, rname), config))
  names = [r.name for r in runs]
  if len(set(names)) != len(names):
    raise SweepError(f"{path}: two runs share a name: {names}")
  return Sweep(
    name=name,
    path=os.path.abspath(path),
    base_config=base_path,
    metric=definition.get("metric", DEFAULT_METRIC),
    swept=list(grid) + [f for f in random if f not in grid],
    runs=runs,
    directory=directory,
    description=definition.get("description", ""),
  )


# --------------------------------------------------------------------------------------------
# Running.


def flag(field: str, value: Any) -> str:
  """`--config.field=value` as ml_collections' config flags parse it."""
  if value is None:
    raise SweepError(f"cannot set {field} to None from the command line")
  return f"--config.{field}={value!r}" if isinstance(value, float) else f"--config.{field}={value}"


def command(sweep: Sweep, run: Run) -> list[str]:
  """The training command line of one run."""
  flags = [flag(f, v) for f, v in run.overrides.items()]
  return [
    sys.executable,
    "-m",
    "pix2pix_jax.main",
    f"--config={sweep.base_config}",
    f"--workdir={run.workdir}",
    *flags,
  ]


def _final_checkpoint_exists(run: Run) -> bool:
  steps = int(run.config.num_train_steps)
  return steps > 0 and os.path.isdir(os.path.join(run.workdir, "checkpoints", str(steps)))


def is_done(run: Run) -> bool:
  """Finished: a DONE marker, or a checkpoint at num_train_steps (when that is fixed)."""
  return os.path.exists(os.path.join(run.workdir, "DONE")) or _final_checkpoint_exists(run)


def _write_json(path: str, value: Any) -> None:
  files.write_atomic(path, json.dumps(value, indent=2, default=str) + "\n")


def _start(sweep: Sweep, run: Run) -> tuple[subprocess.Popen, Any, float]:
  os.makedirs(run.workdir, exist_ok=True)
  cmd = command(sweep, run)
  _write_json(
    os.path.join(run.workdir, "config.json"),
    {"command": cmd, "overrides": run.overrides, "config": run.config.to_dict()},
  )
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  log = open(os.path.join(run.workdir, "train.log"), "a")  # noqa: SIM115 - closed on exit
  log.write(f"$ {' '.join(cmd)}\n")
  log.flush()
  process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
  return process, log, time.time()


def launch(sweep: Sweep, parallel: int = 1, echo=print) -> dict[str, str]:
  """Runs every unfinished run, `parallel` at a time; returns {run name: status}."""
  status = {}
  pending = []
  for run in sweep.runs:
    if is_done(run):
      status[run.name] = "done"
      echo(f"[{sweep.name}] {run.name}: already finished, skipped")
    else:
      pending.append(run)
  active: dict[str, tuple[Run, subprocess.Popen, Any, float]] = {}
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


# --------------------------------------------------------------------------------------------
# Results.


def read_scalars(workdir: str) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of every scalar in the workdir's TensorBoard event files (a resumed
  run's later value wins for a repeated step)."""
  from tensorboard.backend.event_processing import event_file_loader
  from tensorboard.util import tensor_util

  scalars: dict[str, dict[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
    for event in event_file_loader.EventFileLoader(path).Load():
      if not event.HasField("summary"):
        continue
      for value in event.summary.value:
        if value.HasField("tensor"):
          array = tensor_util.make_ndarray(value.tensor)
          if array.size != 1 or array.dtype.kind not in "fiu":
            continue
          number = float(array.reshape(()))
        elif value.HasField("simple_value"):
          number = float(value.simple_value)
        else:
          continue
        scalars.setdefault(value.tag, {})[int(event.step)] = number
  return scalars


def run_results(sweep: Sweep, run: Run, status: str | None = None) -> dict[str, Any]:
  """One row of results.csv: swept values, final/best metric, other final eval metrics,
  throughput (median logged images/s) and wall time."""
  row: dict[str, Any] = {"run": run.name, **{f: run.params.get(f) for f in sweep.swept}}
  row["status"] = status or ("done" if is_done(run) else "not finished")
  scalars = read_scalars(run.workdir) if os.path.isdir(run.workdir) else {}
  curve = scalars.get(f"eval/{sweep.metric}", {})
  row["steps"] = max((max(v) for v in scalars.values() if v), default=0)
  if curve:
    steps = sorted(curve)
    pick = min if metrics.lower_is_better(sweep.metric) else max
    best_step = pick(steps, key=lambda s: curve[s])
    row[f"final_{sweep.metric}"] = curve[steps[-1]]
    row[f"best_{sweep.metric}"] = curve[best_step]
    row["best_step"] = best_step
  else:
    row[f"final_{sweep.metric}"] = row[f"best_{sweep.metric}"] = row["best_step"] = None
  for tag in sorted(scalars):
    if tag.startswith("eval/") and tag != f"eval/{sweep.metric}":
      values = scalars[tag]
      row[f"final_{tag[5:]}"] = values[max(values)]
  rates = scalars.get("images_per_sec", {})
  # The first logged rate includes compilation.
  later = [rates[s] for s in sorted(rates)[1:]] or list(rates.values())
  row["images_per_sec"] = float(np.median(later)) if later else None
  done_path = os.path.join(run.workdir, "DONE")
  wall = None
  if os.path.exists(done_path):
    with open(done_path) as f:
      wall = json.load(f).get("wall_time_s")
  row["wall_time_s"] = wall
  row["workdir"] = run.workdir
  return row


def collect(sweep: Sweep, statuses: dict[str, str] | None = None) -> list[dict[str, Any]]:
  statuses = statuses or {}
  return [run_results(sweep, run, statuses.get(run.name)) for run in sweep.runs]


def _cell(value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def results_csv(rows: list[dict[str, Any]]) -> str:
  columns = list(dict.fromkeys(k for row in rows for k in row))
  out = io.StringIO()
  writer = csv.DictWriter(out, columns, lineterminator="\n")
  writer.writeheader()
  writer.writerows([{k: "" if row.get(k) is None else row.get(k) for k in columns} for row in rows])
  return out.getvalue()


def results_markdown(sweep: Sweep, rows: list[dict[str, Any]]) -> str:
  """A table for humans: swept values, status, final/best metric, other eval metrics, speed."""
  m = sweep.metric
  extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k.startswith("final_")]
  extra = [k for k in extra if k != f"final_{m}"]
  columns = ["run", *sweep.swept, "status", "steps", f"final_{m}", f"best_{m}", "best_step"]
  columns += extra + ["images_per_sec", "wall_time_s"]
  direction = "lower" if metrics.lower_is_better(m) else "higher"
  base = os.path.relpath(sweep.base_config, os.path.dirname(sweep.path))
  lines = [
    f"# Sweep {sweep.name}",
    "",
    *([sweep.description, ""] if sweep.description else []),
    f"Base config `{base}`; metric `{m}` ({direction} is "
    f"better), read from each run's TensorBoard `eval/{m}`. Throughput: median logged images/s.",
    "",
    "| " + " | ".join(columns) + " |",
    "|" + "---|" * len(columns),
  ]
  for row in rows:
    lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
  return "\n".join(lines) + "\n"


def _numeric(values: list[Any]) -> bool:
  return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_params(sweep: Sweep, rows: list[dict[str, Any]], path: str) -> bool:
  """Final (filled) and best (hollow) metric against each swept field; False if none swept."""
  if not sweep.swept:
    return False
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  m = sweep.metric
  fig, axes = plt.subplots(1, len(sweep.swept), figsize=(4.5 * len(sweep.swept), 3.6))
  axes = np.atleast_1d(axes)
  for ax, field in zip(axes, sweep.swept, strict=True):
    done = [r for r in rows if r.get(f"final_{m}") is not None]
    xs = [r[field] for r in done]
    if _numeric(xs):
      positions = xs
      if xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    else:
      labels = list(dict.fromkeys(str(x) for x in xs))
      positions = [labels.index(str(x)) for x in xs]
      ax.set_xticks(range(len(labels)), labels)
    ax.scatter(positions, [r[f"final_{m}"] for r in done], label="final", zorder=3)
    ax.scatter(
      positions, [r[f"best_{m}"] for r in done], facecolors="none", edgecolors="C1", label="best"
    )
    ax.set_xlabel(field)
    ax.set_ylabel(m)
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.suptitle(
    f"{sweep.name}: {m} ({'lower' if metrics.lower_is_better(m) else 'higher'} is better)"
  )
  fig.tight_layout()
  _save_figure(fig, path)
  plt.close(fig)
  return True


def plot_curves(sweep: Sweep, path: str) -> None:
  """The eval metric against the training step, one line per run."""
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  for run in sweep.runs:
    curve = (
      read_scalars(run.workdir).get(f"eval/{sweep.metric}", {})
      if os.path.isdir(run.workdir)
      else {}
    )
    if curve:
      steps = sorted(curve)
      ax.plot(steps, [curve[s] for s in steps], marker="o", label=run.name)
  ax.set_xlabel("step")
  ax.set_ylabel(sweep.metric)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize="small")
  ax.set_title(f"{sweep.name}: eval {sweep.metric}")
  fig.tight_layout()
  _save_figure(fig, path)
  plt.close(fig)


def _save_figure(fig, path: str) -> None:
  data = io.BytesIO()
  fig.savefig(data, dpi=110, format="png")
  files.write_atomic(path, data.getvalue())


def write_reports(sweep: Sweep, rows: list[dict[str, Any]]) -> list[str]:
  """results.csv, results.md and the plots in the sweep's folder; returns the paths."""
  os.makedirs(sweep.directory, exist_ok=True)
  paths = []
  for name, text in (
    ("results.csv", results_csv(rows)),
    ("results.md", results_markdown(sweep, rows)),
  ):
    path = os.path.join(sweep.directory, name)
    files.write_atomic(path, text)
    paths.append(path)
  params_plot = os.path.join(sweep.directory, f"{sweep.metric}_vs_params.png")
  if plot_params(sweep, rows, params_plot):
    paths.append(params_plot)
  curves = os.path.join(sweep.directory, f"{sweep.metric}_curves.png")
  plot_curves(sweep, curves)
  paths.append(curves)
  return paths


# --------------------------------------------------------------------------------------------
# Command line.


def _parse_override(text: str) -> tuple[str, Any]:
  """`--config.field=value` -> (field, value)."""
  if not text.startswith("--config.") or "=" not in text:
    raise SweepError(f"unexpected argument {text!r} (overrides are --config.field=value)")
  field, value = text[len("--config.") :].split("=", 1)
  return field.strip(), config_lib.parse_value(value)


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
  parser.epilog = "--config.field=value (repeatable) overrides a field in every run."
  args, rest = parser.parse_known_args(argv)
  cli.configure()
  try:
    extra = dict(_parse_override(o) for o in rest)
    sweep = load_sweep(args.sweep, root=args.output, scale=args.scale, extra_overrides=extra)
  except errors.UserError as e:
    return cli.report(e)
  print(f"[{sweep.name}] {len(sweep.runs)} runs in {sweep.directory}")
  if args.dry_run:
    for run in sweep.runs:
      state = "finished" if is_done(run) else "to run"
      print(f"{run.name} ({state}):\n  {' '.join(command(sweep, run))}")
    return 0
  statuses = {} if args.collect_only else launch(sweep, args.parallel)
  rows = collect(sweep, statuses)
  for path in write_reports(sweep, rows):
    print(f"wrote {path}")
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
