"""Colour hints (issue 21): what the luminance-aware fill and the hue rotation each bring to the
quickstart hint model (configs/quickstart_hints.py: unet_128 at 128 px, 1200 steps on the 17
embedded training photos, simulated hints with points_p 0.02 and patches up to 5 px, L1 weight
1000). A 2 x 2 grid: the generator's hint fill by position alone (model.hint_luminance_weight 0)
or by position and lightness (2.5, the config's), each trained with the photos' colours as they
are (hint_sim.hue_rotation_p 0) or with half of them turned by a random hue (0.5, the config's).

Each run's quality against the number of hints is then measured on the 4 held-out sample photos
beside gray and the two fills (experiments/results/hints/README.md has the curves):

  pix2pix-sweep experiments/hints.py --output runs
  python experiments/hints_curve.py --workdir "runs/hints/<run>" --data samples \
      --output experiments/results/hints/<run>
"""


def get_sweep():
  return {
    "name": "hints",
    "description": "Quickstart hint model: luminance-aware fill and hue rotation, on and off.",
    "base_config": "../configs/quickstart_hints.py",
    "grid": {
      "model.hint_luminance_weight": [0.0, 2.5],
      "hint_sim.hue_rotation_p": [0.0, 0.5],
    },
    "metric": "ciede2000",
  }
