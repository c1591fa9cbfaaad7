"""Pix2Pix networks (networks), their stride-2 layers (layers) and convolutions (conv), the render
sizes a generator accepts (render) and the reference PyTorch weights' mapping (torch_weights).
Names are loaded on first use, so that `models.render` imports without flax.
"""

import importlib

_SUBMODULES = ("conv", "layers", "networks", "render", "torch_weights")
_NAMES = {
  "ConvPolicy": "conv",
  "Downsample": "layers",
  "Upsample": "layers",
  "dropout": "layers",
  "PatchDiscriminator": "networks",
  "PixelDiscriminator": "networks",
  "UNetGenerator": "networks",
  "count_params": "networks",
  "generator_predict": "networks",
  "make_discriminator": "networks",
  "make_generator": "networks",
}

__all__ = sorted((*_SUBMODULES, *_NAMES))


def __getattr__(name: str):
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  if name in _NAMES:
    return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
