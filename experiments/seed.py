"""The original experiment (configs/seed.py): RGB output from a 0.3R+0.59G+0.11B gray input,
L1 weight 100, Adam 2e-4 / 0.5, batch size 1, 2000 Places365 images at 256x256.

Quickstart scale (default): the same losses and colour space on the embedded samples at 128 px
(configs/quickstart.py with color_space="rgb") cut to 40 + 20 epochs (240 steps).
Full scale (`--scale full`): configs/seed.py unchanged (200 epochs of 2000 images).
"""


def get_sweep():
  return {
    "name": "seed",
    "description": "The original seed experiment: one run, no swept field.",
    "base_config": "quickstart_240.py",
    "overrides": {
      "color_space": "rgb",
      "loss.l1_weight": 100.0,
    },
    "metric": "ciede2000",
    "scales": {"full": {"base_config": "../configs/seed.py", "overrides": {}}},
  }
