"""Quality against the number of colour hints: `pix2pix-evaluate --hints N` for each N, collected
into one table (experiments/results/hints/results.md and results.csv).

  python experiments/hints_curve.py --workdir runs/hints/base --data samples \
      --output experiments/results/hints

Each N evaluates the same held-out images with N hint points sampled from each ground truth
(seeded per image, so N = 5 holds the points of N = 1 only by chance) and reports the model
without hints, the model with them, gray, the nearest-hint fill and the luminance-aware fill.
"""

import argparse
import csv
import io
import json
import os

from pix2pix_jax import files
from pix2pix_jax.evaluate import main as evaluate

COUNTS = (0, 1, 5, 20, 100)
PREDICTORS = ("model", "model_hints", "gray", "nearest_hint", "luminance_fill")
METRICS = ("ciede2000", "psnr", "ssim")


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--data", default="samples")
  parser.add_argument("--output", required=True)
  parser.add_argument("--counts", default=",".join(map(str, COUNTS)))
  parser.add_argument("--hint-patch", type=int, default=1)
  args = parser.parse_args()
  rows = []
  for n in (int(c) for c in args.counts.split(",")):
    result = evaluate.evaluate_workdir(
      args.workdir, args.data, num_hints=n, hint_patch=args.hint_patch, show_progress=False
    )
    summary = evaluate.summary_json(result)
    for p in PREDICTORS:
      row = {"hints": n, "predictor": p}
      for m in METRICS:
        row[m] = summary[p][m]["mean"]
        row[f"{m}_ci95"] = [summary[p][m]["ci95_low"], summary[p][m]["ci95_high"]]
      rows.append(row)
    info = result.info
    print(
      f"hints {n}: " + ", ".join(f"{p} {summary[p]['ciede2000']['mean']:.2f}" for p in PREDICTORS)
    )
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["hints", "predictor", *METRICS])
  for r in rows:
    writer.writerow([r["hints"], r["predictor"], *(f"{r[m]:.4f}" for m in METRICS)])
  os.makedirs(args.output, exist_ok=True)
  files.write_atomic(os.path.join(args.output, "results.csv"), out.getvalue())
  files.write_atomic(
    os.path.join(args.output, "results.json"), json.dumps({"info": info, "rows": rows}, indent=1)
  )
  lines = [
    f"CIEDE2000 (lower is better) on {info['num_images']} held-out images ({args.data}), "
    f"{info['workdir']} step {info['step']}, {info['crop_size']} px, hint patch "
    f"{args.hint_patch}:",
    "",
    "| hints | model, no hints | model + hints | gray | nearest-hint fill | luminance fill "
    "| model / nearest fill |",
    "|---:|---:|---:|---:|---:|---:|---:|",
  ]
  by = {(r["hints"], r["predictor"]): r for r in rows}
  for n in sorted({r["hints"] for r in rows}):
    c = {p: by[n, p]["ciede2000"] for p in PREDICTORS}
    lines.append(
      f"| {n} | {c['model']:.2f} | {c['model_hints']:.2f} | {c['gray']:.2f} | "
      f"{c['nearest_hint']:.2f} | {c['luminance_fill']:.2f} | "
      f"{c['model_hints'] / c['nearest_hint']:.2f} |"
    )
  files.write_atomic(os.path.join(args.output, "curve.md"), "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
