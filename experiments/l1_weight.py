"""L1 weight sweep: how much the L1 term (lambda in G = GAN + lambda * L1) matters.

Quickstart scale (default): configs/quickstart.py cut to 40 + 20 epochs (240 steps).
Full scale (`--scale full`): configs/default.py (Pix2Pix paper settings on places365_small).
"""


def get_sweep():
  return {
    "name": "l1_weight",
    "description": "Generator L1 weight: 1, 10, 100 (the paper's value), 1000.",
    "base_config": "quickstart_240.py",
    "grid": {"loss.l1_weight": [1.0, 10.0, 100.0, 1000.0]},
    "metric": "ciede2000",
    "scales": {"full": {"base_config": "../configs/default.py", "overrides": {}}},
  }
