"""Colour hints (issue 21): the quickstart with a hint-conditioned generator (hints simulated from
each training photo), over the quickstart's full schedule (200 + 100 epochs of the 17 samples at
batch 4: 1200 steps), at L1 weight 100 for two densities of the simulated hints: hint_sim.points_p
1/8 (mean 7 points a photo) and 0.05 (mean 19). configs/quickstart_hints.py itself (points_p 0.02,
L1 weight 1000) is the third run: `pix2pix-train --config configs/quickstart_hints.py`.

Each run's quality against the number of hints is then measured on the 4 held-out sample photos
beside gray and the nearest-hint fill (experiments/results/hints/README.md has the curves):

  python experiments/hints_curve.py --workdir "runs/hints/<run>" --data samples \
      --output experiments/results/hints/<run>
"""


def get_sweep():
  return {
    "name": "hints",
    "description": "Quickstart hint model at two hint densities; then hints_curve.py per run.",
    "base_config": "../configs/quickstart_hints.py",
    "overrides": {"loss.l1_weight": 100.0},
    "grid": {"hint_sim.points_p": [0.125, 0.05]},
    "metric": "ciede2000",
  }
