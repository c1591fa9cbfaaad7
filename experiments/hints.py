"""Colour hints (issue 21): configs/quickstart_hints.py, the quickstart with a hint-conditioned
generator (hints simulated from each training photo), trained over the quickstart's full
schedule (200 + 100 epochs of the 17 samples at batch 4: 1200 steps).

The run's quality against the number of hints is then measured on the 4 held-out sample photos:

  for n in 0 1 5 20 100; do
    pix2pix-evaluate --workdir runs/hints/base --data samples --hints $n --json runs/hints/h$n.json
  done

beside gray and the nearest-hint fill; experiments/results/hints/results.md has the curve.
"""


def get_sweep():
  return {
    "name": "hints",
    "description": "Quickstart hint model: one run, no swept field; evaluate with --hints N.",
    "base_config": "../configs/quickstart_hints.py",
    "overrides": {},
    "metric": "ciede2000",
  }
