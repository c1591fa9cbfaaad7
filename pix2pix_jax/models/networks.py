"""Pix2Pix networks (flax.linen): U-Net generator, PatchGAN and pixel discriminators, laid out as
the reference PyTorch code so that its weights map 1:1 (torch_weights.py). The stride-2 layers
come in as module factories (`down`, `up`); `make_generator` and `make_discriminator` choose them
from `config.model.conv`.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from pix2pix_jax import color, hints, xla_flags
from pix2pix_jax.hints import device as hint_ops
from pix2pix_jax.models import conv, layers

ModuleDef = Any  # a module factory, called as `down(features, use_bias=, dtype=, name=)`


def _scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """N(1, 0.02), the reference's initialisation of normalisation scales."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _conv(features: int, use_bias: bool, dtype: Any, name: str) -> nn.Conv:
  """4x4 stride-1 convolution with torch padding 1."""
  return nn.Conv(
    features,
    (4, 4),
    padding=((1, 1), (1, 1)),
    use_bias=use_bias,
    dtype=dtype,
    kernel_init=layers.KERNEL_INIT,
    name=name,
  )


def _norm(kind: str, train: bool, dtype: Any, name: str):
  """The reference's norm layers; "instance" has no affine parameters (affine=False)."""
  if kind == "batch":
    # flax momentum 0.9 == torch momentum 0.1.
    return nn.BatchNorm(
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      dtype=dtype,
      scale_init=_scale_init,
      name=name,
    )
  if kind == "instance":
    return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype, name=name)
  if kind == "none":
    return lambda x: x
  raise ValueError(f"unknown norm {kind!r}")


def _use_bias(norm: str) -> bool:
  # The reference: use_bias = norm_layer == nn.InstanceNorm2d (so "none" has no bias either).
  return norm == "instance"


class UNetGenerator(nn.Module):
  """The reference U-Net: [N,H,W,C] in [-1, 1] -> [N,H,W,output_channels] tanh, float32.

  H and W must be multiples of 2**num_downs. With `hints`, the input is L and the hint channels
  (hint_ops.encode), C = 4; given L alone (C = 1) it sees "no hints". Its hints are spread to every
  pixel first (hint_ops.propagate), and its tanh output is a correction added to that fill.
  """

  output_channels: int
  num_downs: int = 8  # 8 = unet_256, 7 = unet_128
  ngf: int = 64
  norm: str = "batch"  # "batch" | "instance" | "none"
  use_dropout: bool = True
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32
  down: ModuleDef = layers.Downsample  # the 4x4 stride-2 convolutions
  up: ModuleDef = layers.Upsample  # the 4x4 stride-2 transposed convolutions
  hints: bool = False  # input: L + hint ab + hint mask (see pix2pix_jax/hints/)
  hint_luminance_weight: float = 0.0  # hint_ops.propagate's weight of luminance

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.num_downs < 5:
      raise ValueError(f"num_downs must be >= 5, got {self.num_downs}")
    fill = None
    if self.hints:
      if x.shape[-1] == 1:
        x = jnp.concatenate([x, hint_ops.no_hints(x.shape).astype(x.dtype)], axis=-1)
      x, fill = self._fill_hints(x)
    inner = [self.ngf * min(2**level, 8) for level in range(self.num_downs)]
    outer = [self.output_channels] + inner[:-1]
    last = self.num_downs - 1
    bias = _use_bias(self.norm)

    skips = []
    h = x.astype(self.dtype)
    for level in range(self.num_downs):
      if level > 0:
        # The reference's in-place LeakyReLU also rewrites the tensor that its skip connection
        # concatenates, so the skip carries the activated input.
        h = nn.leaky_relu(h, 0.2)
      skips.append(h)
      h = self.down(inner[level], use_bias=bias, dtype=self.dtype, name=f"down{level}")(h)
      if 0 < level < last:
        h = _norm(self.norm, train, self.dtype, f"down_norm{level}")(h)

    for level in reversed(range(self.num_downs)):
      h = nn.relu(h)
      up_bias = level == 0 or bias
      h = self.up(outer[level], use_bias=up_bias, dtype=self.dtype, name=f"up{level}")(h)
      if level == 0:
        out = jnp.tanh(h.astype(jnp.float32))
        return out if fill is None else jnp.clip(fill + out, -1.0, 1.0)
      h = _norm(self.norm, train, self.dtype, f"up_norm{level}")(h)
      if self.use_dropout and train and 4 <= level < last:
        h = layers.dropout(h, 0.5, self.make_rng("dropout"))
      h = jnp.concatenate([skips[level], h], axis=-1)
    raise AssertionError("unreachable")

  def _fill_hints(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(L, hint ab, mask) -> the network's input (L, the hints spread by hint_ops.propagate, each
    pixel's distance to its hint: how far the fill can be trusted) and that fill in the output's
    space (ab / 110, or RGB in [-1, 1] with the input's L), to which the network's output is
    added as a correction."""
    x = jnp.asarray(x, jnp.float32)
    lightness = color.input_lightness(x[..., :1], "rgb" if self.output_channels == 3 else "lab")
    weight = self.hint_luminance_weight
    fill, distance = hint_ops.propagate(x[..., 1:3], x[..., 3] > 0, lightness[..., 0], weight)
    x = jnp.concatenate([x[..., :1], fill, distance[..., None]], axis=-1)
    if self.output_channels == 3:
      fill = color.combine(lightness, fill * hint_ops.AB_SCALE) * 2.0 - 1.0
    return x, fill


class PatchDiscriminator(nn.Module):
  """The reference's n-layer PatchGAN (70x70 receptive field for n_layers=3).

  Input: condition concatenated with image, [N,H,W,C]; output: float32 logits
  [N, H/2**n_layers - 2, W/2**n_layers - 2, 1].
  """

  ndf: int = 64
  n_layers: int = 3
  norm: str = "batch"
  dtype: Any = jnp.float32
  down: ModuleDef = layers.Downsample  # the 4x4 stride-2 convolutions

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bias = _use_bias(self.norm)
    h = self.down(self.ndf, use_bias=True, dtype=self.dtype, name="conv0")(x.astype(self.dtype))
    h = nn.leaky_relu(h, 0.2)
    for n in range(1, self.n_layers + 1):
      features = self.ndf * min(2**n, 8)
      if n < self.n_layers:
        h = self.down(features, use_bias=bias, dtype=self.dtype, name=f"conv{n}")(h)
      else:
        h = _conv(features, bias, self.dtype, f"conv{n}")(h)
      h = _norm(self.norm, train, self.dtype, f"norm{n}")(h)
      h = nn.leaky_relu(h, 0.2)
    h = _conv(1, True, self.dtype, f"conv{self.n_layers + 1}")(h)
    return h.astype(jnp.float32)


class PixelDiscriminator(nn.Module):
  """The reference's 1x1 "pixel" discriminator: float32 logits [N,H,W,1]."""

  ndf: int = 64
  norm: str = "batch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bias = _use_bias(self.norm)

    def conv1x1(features, use_bias, name):
      return nn.Conv(
        features,
        (1, 1),
        use_bias=use_bias,
        dtype=self.dtype,
        kernel_init=layers.KERNEL_INIT,
        name=name,
      )

    h = nn.leaky_relu(conv1x1(self.ndf, True, "conv0")(x.astype(self.dtype)), 0.2)
    h = _norm(self.norm, train, self.dtype, "norm1")(conv1x1(self.ndf * 2, bias, "conv1")(h))
    h = nn.leaky_relu(h, 0.2)
    # The reference's last 1x1 conv also uses bias=use_bias.
    return conv1x1(1, bias, "conv2")(h).astype(jnp.float32)


def _dtype(name: Any) -> Any:
  return jnp.dtype(name) if isinstance(name, str) else name


def conv_policy(config) -> conv.ConvPolicy:
  """The policy named by config.model.conv ("auto" | "plain" | "cpu_tuned"). Kernel gradients
  are summed image by image only where the training step runs YNNPACK's convolutions: the split
  is faster with those and slower with XLA's Eigen ones (docs/performance.md)."""
  if xla_flags.train_compiler_options():
    return conv.ConvPolicy(form=config.model.conv, kgrad_split_max_batch=1)
  return conv.ConvPolicy(form=config.model.conv)


def make_generator(config) -> UNetGenerator:
  """The generator described by config.model; RGB output has 3 channels, Lab (ab) 2."""
  m = config.model
  policy = conv_policy(config)
  return UNetGenerator(
    output_channels=3 if config.color_space == "rgb" else 2,
    num_downs=m.num_downs,
    ngf=m.ngf,
    norm=m.norm,
    use_dropout=m.use_dropout,
    dtype=_dtype(m.dtype),
    down=functools.partial(layers.Downsample, policy=policy),
    up=functools.partial(layers.Upsample, policy=policy),
    hints=hints.enabled(config),
    hint_luminance_weight=hints.luminance_weight(config) if hints.enabled(config) else 0.0,
  )


def make_discriminator(config) -> nn.Module:
  """The discriminator named by config.model.discriminator ("patch" | "pixel")."""
  m = config.model
  if m.discriminator == "patch":
    return PatchDiscriminator(
      ndf=m.ndf,
      n_layers=m.n_layers_d,
      norm=m.norm,
      dtype=_dtype(m.dtype),
      down=functools.partial(layers.Downsample, policy=conv_policy(config)),
    )
  if m.discriminator == "pixel":
    return PixelDiscriminator(ndf=m.ndf, norm=m.norm, dtype=_dtype(m.dtype))
  raise ValueError(f"unknown discriminator {m.discriminator!r}")


def count_params(params: Any) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(int(p.size) for p in jax.tree.leaves(params))


def generator_predict(config) -> Callable[..., jax.Array]:
  """The config's generator as (variables, model input [B,r,r,1], or [B,r,r,4] with hints) ->
  ab [B,r,r,2], not jit'd."""
  generator = make_generator(config)
  color_space = config.color_space

  def predict(variables: dict[str, Any], x: jax.Array) -> jax.Array:
    outputs = generator.apply(variables, x, train=False)
    return color.predicted_ab(x[..., :1], outputs.astype(jnp.float32), color_space)

  return predict
