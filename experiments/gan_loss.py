"""GAN objective sweep: vanilla (BCE, the paper), least squares (LSGAN) and hinge.

Quickstart scale (default): configs/quickstart.py cut to 40 + 20 epochs (240 steps).
Full scale (`--scale full`): configs/default.py (Pix2Pix paper settings on places365_small).
"""


def get_sweep():
  return {
    "name": "gan_loss",
    "description": "GAN loss: vanilla / lsgan / hinge, everything else as the base config.",
    "base_config": "quickstart_240.py",
    "grid": {"loss.gan": ["vanilla", "lsgan", "hinge"]},
    "metric": "ciede2000",
    "scales": {"full": {"base_config": "../configs/default.py", "overrides": {}}},
  }
