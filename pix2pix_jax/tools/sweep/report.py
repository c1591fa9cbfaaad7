"""Sweep results: each run's metrics read back from its TensorBoard events, results.csv,
results.md and plots of the metric against each swept field and against the step."""

import csv
import glob
import io
import json
import os
from typing import Any

import numpy as np

from pix2pix_jax import files, metrics
from pix2pix_jax.tools.sweep import spec


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


def run_results(sweep: spec.Sweep, run: spec.Run, status: str | None = None) -> dict[str, Any]:
  """One row of results.csv: swept values, final/best metric, other final eval metrics,
  throughput (median logged images/s) and wall time."""
  row: dict[str, Any] = {"run": run.name, **{f: run.params.get(f) for f in sweep.swept}}
  row["status"] = status or ("done" if spec.is_done(run) else "not finished")
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


def collect(sweep: spec.Sweep, statuses: dict[str, str] | None = None) -> list[dict[str, Any]]:
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


def results_markdown(sweep: spec.Sweep, rows: list[dict[str, Any]]) -> str:
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


def plot_params(sweep: spec.Sweep, rows: list[dict[str, Any]], path: str) -> bool:
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


def plot_curves(sweep: spec.Sweep, path: str) -> None:
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


def write_reports(sweep: spec.Sweep, rows: list[dict[str, Any]]) -> list[str]:
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
