"""CPU demo of colour hints: configs/quickstart.py with a hint-conditioned generator.

The generator also takes the hint chroma and mask (pix2pix_jax/hints.py); training simulates
hints from each photo (a geometric number of points, mean 49, 1 in 50 photos none, 1 in 9 five or
fewer; patches of 1, 3 or 5 pixels at 128x128), with L1 weight 1000. Measured on the held-out
samples (experiments/results/hints/), this uses 20 hints best of the three settings tried:
CIEDE2000 6.90, against 8.95 for points_p 0.05 and 10.25 for 1/8 (both at L1 weight 100).
Colourise with `pix2pix-colorize --hints scribbles.png` or `--hints points.json`; evaluate with
`pix2pix-evaluate --hints 20`.
"""

from pix2pix_jax import config_lib


def get_config():
  config = config_lib.load_sibling(__file__, "quickstart.py")
  config.model.hints = True
  config.hint_sim.max_patch = 5
  config.hint_sim.points_p = 0.02
  config.loss.l1_weight = 1000.0
  return config
