"""The networks' stride-2 layers and a sharding-aware dropout. `Downsample` and `Upsample` hold
the parameters of `nn.Conv` / `nn.ConvTranspose` ("kernel" (4, 4, Cin, Cout), optional "bias"),
so that the reference PyTorch weights map onto them, and compute as their `conv.ConvPolicy` says.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from pix2pix_jax.models import conv

KERNEL_INIT = nn.initializers.normal(0.02)  # the reference's init_weights(init_type="normal")


def _conv_with_bias(module: nn.Module, x: jax.Array, op) -> jax.Array:
  """`op(x, kernel, policy)` plus the optional bias, in the module's compute dtype; the
  parameters stay float32."""
  shape = (4, 4, x.shape[-1], module.features)
  kernel = module.param("kernel", KERNEL_INIT, shape, jnp.float32)
  y = op(x.astype(module.dtype), kernel.astype(module.dtype), module.policy)
  if module.use_bias:
    bias = module.param("bias", nn.initializers.zeros, (module.features,), jnp.float32)
    y = y + bias.astype(module.dtype)
  return y


class Downsample(nn.Module):
  """4x4 stride-2 convolution with torch padding 1, torch Conv2d(k=4, s=2, p=1)."""

  features: int
  use_bias: bool = False
  policy: conv.ConvPolicy = conv.AUTO
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return _conv_with_bias(self, x, conv.down)


class Upsample(nn.Module):
  """4x4 stride-2 transposed convolution, torch ConvTranspose2d(k=4, s=2, p=1); a torch weight
  (Cin, Cout, kh, kw) is our kernel (kh, kw, Cin, Cout)."""

  features: int
  use_bias: bool = False
  policy: conv.ConvPolicy = conv.AUTO
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return _conv_with_bias(self, x, conv.up)


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Inverted dropout whose mask carries `x`'s sharding, as explicit-sharding meshes require
  (flax's nn.Dropout draws an unsharded mask and fails there)."""
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape, out_sharding=conv.mesh_sharding(x))
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)
