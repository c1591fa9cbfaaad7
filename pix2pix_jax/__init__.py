"""pix2pix_jax: Pix2Pix colourisation in JAX/Flax. Importing it changes no global setting.

`Colorizer` and `colorize_video` are loaded on first use, so `import pix2pix_jax` stays light.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
  "Colorizer": "pix2pix_jax.colorize.colorizer",
  "colorize_video": "pix2pix_jax.colorize.video.clip",
}
__all__ = ["Colorizer", "colorize_video"]


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
