"""CPU demo of colour hints: configs/quickstart.py with a hint-conditioned generator.

The generator spreads its hints by position and lightness (model.hint_luminance_weight 2.5) and
learns a correction to that fill (pix2pix_jax/hints/). Training simulates hints from each photo
(a geometric number of points, mean 19, 1 in 20 photos none; patches of 1, 3 or 5 pixels at
128x128), turns half the photos' colours by a random hue so that the hints, not remembered
colours, carry the colour, dulls half of them by a random chroma factor so that dull hints give
dull colours, and weights L1 by 1000. On the 4 held-out samples, 20 hints give CIEDE2000 4.99
against 5.73 for the nearest-hint fill; on 26 photos it never saw, 5.09 against 6.06 (16% below;
experiments/results/hints/).
Colourise with `pix2pix-colorize --hints scribbles.png` or `--hints points.json`; evaluate with
`pix2pix-evaluate --hints 20`.
"""

from pix2pix_jax import config_lib


def get_config():
  config = config_lib.load_sibling(__file__, "quickstart.py")
  config.model.hints = True
  config.hint_sim.max_patch = 5
  config.hint_sim.points_p = 0.05
  config.loss.l1_weight = 1000.0
  config.hint_sim.hue_rotation_p = 0.5
  config.hint_sim.chroma_scale_p = 0.5
  return config
