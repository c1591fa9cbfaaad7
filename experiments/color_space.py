"""Colour space sweep: predict RGB from a 0.3R+0.59G+0.11B gray (the original experiment) or
predict Lab ab from L (the colourisation literature's choice).

Quickstart scale (default): configs/quickstart.py cut to 40 + 20 epochs (240 steps).
Full scale (`--scale full`): configs/default.py (Pix2Pix paper settings on places365_small).
"""


def get_sweep():
  return {
    "name": "color_space",
    "description": "Output colour space: rgb (3 channels) vs lab (ab, 2 channels).",
    "base_config": "quickstart_240.py",
    "grid": {"color_space": ["rgb", "lab"]},
    "metric": "ciede2000",
    "scales": {"full": {"base_config": "../configs/default.py", "overrides": {}}},
  }
