"""Pix2Pix networks (networks.py), their stride-2 layers (layers.py), the convolutions those
compute with per-backend formulations (conv.py), and the reference PyTorch weights' mapping
(torch_weights.py)."""

from pix2pix_jax.models import conv, layers, networks, torch_weights
from pix2pix_jax.models.conv import ConvPolicy
from pix2pix_jax.models.layers import Downsample, Upsample, dropout
from pix2pix_jax.models.networks import (
  PatchDiscriminator,
  PixelDiscriminator,
  UNetGenerator,
  count_params,
  make_discriminator,
  make_generator,
)

__all__ = [
  "ConvPolicy",
  "Downsample",
  "PatchDiscriminator",
  "PixelDiscriminator",
  "UNetGenerator",
  "Upsample",
  "conv",
  "count_params",
  "dropout",
  "layers",
  "make_discriminator",
  "make_generator",
  "networks",
  "torch_weights",
]
