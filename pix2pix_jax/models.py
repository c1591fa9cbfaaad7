"""Pix2Pix networks: U-Net generator, PatchGAN and pixel discriminators (flax.linen).

The layout, parameter shapes and arithmetic follow the reference PyTorch implementation, so
that its weights map 1:1 onto these parameter trees: a torch Conv2d weight (Cout, Cin, kh, kw)
becomes our "kernel" (kh, kw, Cin, Cout), and a ConvTranspose2d weight (Cin, Cout, kh, kw)
also becomes (kh, kw, Cin, Cout).

Upsampling is a 4x4 stride-2 transposed convolution (torch padding 1). On XLA:CPU the weight
gradient of the plain formulation is some 30x slower than its forward pass, which made training
about 10x slower than PyTorch. `upsample="fast"` computes exactly the same function with the
same parameters, but with a hand-written gradient built from an ordinary stride-2 convolution
and its weight gradient, both of which XLA:CPU runs quickly. Its forward pass, and the input
gradient of the stride-2 down convolutions (also a transposed convolution), pick by shape among
equal formulations: one matmul per kernel tap on the deep levels with few pixels, one ordinary
2x2 convolution computing all four output phases on large maps, XLA's lhs-dilated convolution
otherwise; each is up to several times faster than the others where it is chosen. The stride-2
convolutions' forward pass and kernel gradients likewise use per-tap matmuls on the deepest
maps, and kernel gradients on large maps are summed image by image. Tests prove every form
equal to the plain one (values and gradients); the thresholds are measured crossovers.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax
from jax.sharding import PartitionSpec as P

_DIMS = ("NHWC", "HWIO", "NHWC")
_INIT = nn.initializers.normal(0.02)


def _scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """N(1, 0.02), the reference's initialisation of normalisation scales."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _mesh_sharding(x: jax.Array) -> Any:
  """`x`'s sharding when it lives on a named mesh (explicit sharding), else None."""
  sharding = jax.typeof(x).sharding
  return sharding if sharding.mesh.axis_names else None


def _local_shape(x: jax.Array) -> tuple[int, ...]:
  """`x`'s shape on one device (its shard's shape on a named mesh)."""
  sharding = _mesh_sharding(x)
  return x.shape if sharding is None else sharding.shard_shape(x.shape)


def conv_down(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """4x4 stride-2 convolution with padding 1 (torch Conv2d(k=4, s=2, p=1))."""
  return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DIMS)


def conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """4x4 stride-2 transposed convolution, torch ConvTranspose2d(k=4, s=2, p=1).

  out[2i + ky - 1, 2j + kx - 1, o] += x[i, j, c] * kernel[ky, kx, c, o]: the input dilated by 2,
  padded by 2 and correlated with the spatially flipped kernel. This is the plain form, whose
  weight gradient XLA:CPU computes slowly.
  """
  return lax.conv_general_dilated(
    x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2), dimension_numbers=_DIMS
  )


# For output row 2m + r, the taps that land there and the row of the input padded by 1 they read:
# out[2m] = x[m] k[1] + x[m - 1] k[3],  out[2m + 1] = x[m] k[2] + x[m + 1] k[0].
_PHASE_TAPS = (((1, 1), (3, 0)), ((2, 1), (0, 2)))


def conv_transpose_matmul(x: jax.Array, kernel: jax.Array, swap_io: bool = False) -> jax.Array:
  """`conv_transpose` as a matmul per kernel tap, then an overlap-add into the output phases.

  Exact arithmetic (no multiplications by inserted zeros). The 16 taps are one batched matmul
  over the kernel as it lies in memory (the input, which is small here, is broadcast to the
  taps), up to 15x faster on XLA:CPU than the lhs-dilated convolution or a matmul per tap on
  the deep levels, whose large kernels make them memory-bound. `swap_io`: `kernel` is
  (4, 4, Cout, Cin) and is read transposed, again without a copy.
  """
  n, h, w, _ = x.shape
  kernel = kernel.reshape(16, *kernel.shape[2:])
  taps_x = jnp.broadcast_to(x[None], (16, *x.shape))
  contract = (((4,), (2 if swap_io else 1,)), ((0,), (0,)))
  products = lax.dot_general(taps_x, kernel, contract)  # [tap, n, h, w, o]
  products = jnp.pad(products, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
  taps = [[products[4 * ky + kx] for kx in range(4)] for ky in range(4)]
  rows = []
  for row_taps in _PHASE_TAPS:
    cols = []
    for col_taps in _PHASE_TAPS:
      terms = [
        taps[ky][kx][:, oy : oy + h, ox : ox + w] for ky, oy in row_taps for kx, ox in col_taps
      ]
      cols.append(sum(terms[1:], terms[0]))
    rows.append(jnp.stack(cols, axis=3))  # [n, h, w, rx, o]
  # [n, h, ry, w, rx, o] -> [n, 2h, 2w, o]; explicit meshes need the output sharding spelled out.
  out = jnp.stack(rows, axis=2)
  shape = (n, 2 * h, 2 * w, products.shape[-1])
  return lax.reshape(out, shape, out_sharding=_mesh_sharding(x))


def _phase_kernel(kernel: jax.Array, swap_io: bool) -> jax.Array:
  """(4, 4, Cin, Cout) -> (2, 2, Cin, 4 * Cout): the 2x2 kernel of each output phase (ry, rx)
  side by side, [a, b, c, (ry, rx, o)] = kernel[row tap a of phase ry, col tap b of rx, c, o].
  With `swap_io`, `kernel` is (4, 4, Cout, Cin)."""
  if swap_io:
    kernel = kernel.transpose(0, 1, 3, 2)  # fused into the gather below
  # Phase r reads the input padded by 1 at offsets r + (0, 1) with these kernel taps (the
  # taps of _PHASE_TAPS[r], ordered by offset).
  taps = ((3, 1), (2, 0))
  rows = []
  for a in range(2):
    cols = []
    for b in range(2):
      phases = [kernel[taps[ry][a], taps[rx][b]] for ry in range(2) for rx in range(2)]
      cols.append(jnp.stack(phases, axis=1))  # [c, 4, o]
    rows.append(jnp.stack(cols))
  cin, cout = kernel.shape[2:]
  return jnp.stack(rows).reshape(2, 2, cin, 4 * cout)


def conv_transpose_phases(x: jax.Array, kernel: jax.Array, swap_io: bool = False) -> jax.Array:
  """`conv_transpose` as one stride-1 2x2 convolution producing all four output phases, then an
  interleave: exact arithmetic up to one extra row and column, and an ordinary convolution,
  which XLA:CPU runs several times faster than the lhs-dilated form at batch > 1 on large maps.

  Phase (ry, rx) of the output at (m, m') is that convolution over the input padded by 1,
  evaluated at (m + ry, m' + rx).
  """
  n, h, w, _ = x.shape
  cout = kernel.shape[2 if swap_io else 3]
  sharding = _mesh_sharding(x)
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = lax.conv_general_dilated(
    padded, _phase_kernel(kernel, swap_io), (1, 1), "VALID", dimension_numbers=_DIMS
  )
  y = lax.reshape(y, (n, h + 1, w + 1, 2, 2, cout), out_sharding=sharding)
  rows = [
    jnp.stack([y[:, ry : ry + h, rx : rx + w, ry, rx] for rx in range(2)], axis=3)
    for ry in range(2)
  ]
  out = jnp.stack(rows, axis=2)  # [n, h, ry, w, rx, o]
  return lax.reshape(out, (n, 2 * h, 2 * w, cout), out_sharding=sharding)


# Measured on XLA:CPU (batch 1 and 4, 256x256 U-Net levels): the per-tap matmuls win at up to
# this many input pixels (batch included), the phase convolution on maps of at least this many
# pixels per image, and the lhs-dilated convolution otherwise and for few output channels.
MATMUL_MAX_PIXELS = 256
PHASES_MIN_PIXELS = 32 * 32
MIN_FEATURES = 64


def _transpose_forward(x: jax.Array, kernel: jax.Array, swap_io: bool = False) -> jax.Array:
  """The fastest of the equal forward formulations for this (per-device) shape; `swap_io`:
  `kernel` is (4, 4, Cout, Cin), as the adjoint of a down convolution has it."""
  n, h, w, _ = _local_shape(x)
  if kernel.shape[2 if swap_io else 3] >= MIN_FEATURES:
    if h * w >= PHASES_MIN_PIXELS:
      return conv_transpose_phases(x, kernel, swap_io)
    if n * h * w <= MATMUL_MAX_PIXELS:
      return conv_transpose_matmul(x, kernel, swap_io)
  return conv_transpose(x, kernel.transpose(0, 1, 3, 2) if swap_io else kernel)


def _taps(x: jax.Array) -> jax.Array:
  """The 16 windows a 4x4 stride-2 convolution with padding 1 reads, tap-major:
  [16, n, h/2, w/2, c], tap (ky, kx) at (i, j) being x padded by 1 at (2i + ky, 2j + kx)."""
  _, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.stack(
    [padded[:, ky : ky + h : 2, kx : kx + w : 2] for ky in range(4) for kx in range(4)]
  )


def _each_tap(x: jax.Array) -> jax.Array:
  return jnp.broadcast_to(x[None], (16, *x.shape))


def _tap_products(a: jax.Array, b: jax.Array) -> jax.Array:
  """sum over images and pixels of a[t]^T b[t] for each tap t: [16, Ca, Cb] -> (4, 4, Ca, Cb)."""
  sharding = _mesh_sharding(a)
  replicated = None if sharding is None else jax.sharding.NamedSharding(sharding.mesh, P())
  dims = (((1, 2, 3), (1, 2, 3)), ((0,), (0,)))
  out = lax.dot_general(a, b, dims, out_sharding=replicated)
  return out.reshape(4, 4, *out.shape[1:])


def conv_down_matmul(x: jax.Array, kernel: jax.Array, swap_io: bool = False) -> jax.Array:
  """`conv_down` as one batched matmul over the 16 taps and a sum: XLA:CPU's convolution is
  several times slower on the deepest, nearly empty maps (2x2 -> 1x1). `swap_io`: `kernel` is
  (4, 4, Cout, Cin), read transposed without a copy."""
  kernel = kernel.reshape(16, *kernel.shape[2:])
  contract = (((4,), (2 if swap_io else 1,)), ((0,), (0,)))
  return lax.dot_general(_taps(x), kernel, contract).sum(0)


# The stride-2 convolution's own per-tap matmul forms (forward, kernel gradient) win on XLA:CPU
# up to this many output pixels (batch included); above it XLA's convolution does.
DOWN_MATMUL_MAX_PIXELS = 64


def _small_down(x: jax.Array) -> bool:
  """Whether `conv_down(x, .)` has even input sides and at most DOWN_MATMUL_MAX_PIXELS output
  pixels per device."""
  n, h, w, _ = _local_shape(x)
  return h % 2 == 0 and w % 2 == 0 and n * (h // 2) * (w // 2) <= DOWN_MATMUL_MAX_PIXELS


# XLA:CPU computes a stride-2 convolution's kernel gradient on large maps 1.3-2.2x faster one image
# at a time than for a batch of 4 (64x64 to 256x256 inputs; slower on smaller maps).
KGRAD_SPLIT_MIN_PIXELS = 64 * 64
KGRAD_SPLIT_MAX_BATCH = 8


def _down_kernel_grad(x: jax.Array, kernel: jax.Array, g: jax.Array) -> jax.Array:
  """The kernel gradient of `conv_down(x, kernel)` at output cotangent `g`: per-tap matmuls on
  small maps, and small per-device batches of large maps summed image by image (the same sum,
  in another order)."""
  if _small_down(x):
    return _tap_products(_taps(x), _each_tap(g))

  def grad(x, g):
    return jax.vjp(lambda k: conv_down(x, k), kernel)[1](g)[0]

  n, h, w, _ = _local_shape(x)
  if not (1 < n <= KGRAD_SPLIT_MAX_BATCH and h * w >= KGRAD_SPLIT_MIN_PIXELS):
    return grad(x, g)
  shards = x.shape[0] // n
  sharding = _mesh_sharding(x)
  split = None
  if sharding is not None:
    split = jax.sharding.NamedSharding(sharding.mesh, P(sharding.spec[0], None))

  def image(a, i):  # image i of every device's shard: [shards, h, w, c]
    return lax.reshape(a, (shards, n, *a.shape[1:]), out_sharding=split)[:, i]

  return sum(grad(image(x, i), image(g, i)) for i in range(n))


def _down_forward(x: jax.Array, kernel: jax.Array, swap_io: bool = False) -> jax.Array:
  if _small_down(x):
    return conv_down_matmul(x, kernel, swap_io)
  return conv_down(x, kernel.transpose(0, 1, 3, 2) if swap_io else kernel)


@jax.custom_vjp
def conv_transpose_fast(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_transpose` with a forward chosen by shape and a gradient that XLA:CPU computes
  quickly (same values)."""
  return _transpose_forward(x, kernel)


def _conv_transpose_fast_fwd(x, kernel):
  return _transpose_forward(x, kernel), (x, kernel)


def _conv_transpose_fast_bwd(res, g):
  # conv_transpose(., k) is the adjoint of conv_down(., k with its channel axes swapped).
  # So the input gradient is conv_down(g, k^T), and the kernel gradient is the kernel gradient of
  # that same stride-2 convolution with x as its output cotangent.
  x, kernel = res
  dx = _down_forward(g, kernel, swap_io=True)
  if _small_down(g):  # _down_kernel_grad's matmul form, in the kernel's own layout (no copy)
    dk = _tap_products(_each_tap(x.astype(dx.dtype)), _taps(g))
  else:
    kt = kernel.transpose(0, 1, 3, 2)
    dk = _down_kernel_grad(g, kt, x.astype(dx.dtype)).transpose(0, 1, 3, 2)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


conv_transpose_fast.defvjp(_conv_transpose_fast_fwd, _conv_transpose_fast_bwd)


@jax.custom_vjp
def conv_down_fast(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_down` with per-tap matmuls on the smallest maps and an input gradient (a transposed
  convolution) in the faster form by shape; XLA lowers that gradient to an lhs-dilated
  convolution, which is very slow on XLA:CPU for deep levels (about 10x at 2x2 -> 4x4)."""
  return _down_forward(x, kernel)


def _conv_down_fast_fwd(x, kernel):
  return _down_forward(x, kernel), (x, kernel)


def _conv_down_fast_bwd(res, g):
  x, kernel = res
  dx = _transpose_forward(g, kernel, swap_io=True)
  dk = _down_kernel_grad(x, kernel, g)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


conv_down_fast.defvjp(_conv_down_fast_fwd, _conv_down_fast_bwd)


class Downsample(nn.Module):
  """4x4 stride-2 convolution with torch padding 1, the parameters of `nn.Conv` ("kernel",
  "bias"); "fast" differs from "transpose" (plain) only in how the gradient is computed."""

  features: int
  use_bias: bool = False
  mode: str = "fast"  # "transpose" | "fast", as the generator's `upsample`
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", _INIT, (4, 4, x.shape[-1], self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    y = (conv_down_fast if self.mode == "fast" else conv_down)(x, kernel)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


class Upsample(nn.Module):
  """4x4 stride-2 transposed convolution; "transpose" and "fast" give the same function."""

  features: int
  use_bias: bool = False
  mode: str = "fast"  # "transpose" | "fast"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", _INIT, (4, 4, x.shape[-1], self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if self.mode == "fast":
      y = conv_transpose_fast(x, kernel)
    elif self.mode == "transpose":
      y = conv_transpose(x, kernel)
    else:
      raise ValueError(f"unknown upsample mode {self.mode!r}")
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(
        self.dtype
      )
    return y


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Inverted dropout whose mask carries `x`'s sharding, as explicit-sharding meshes require
  (flax's nn.Dropout draws an unsharded mask and fails there)."""
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape, out_sharding=_mesh_sharding(x))
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def _conv(features: int, use_bias: bool, dtype: Any, name: str) -> nn.Conv:
  """4x4 stride-1 convolution with torch padding 1."""
  return nn.Conv(
    features,
    (4, 4),
    padding=((1, 1), (1, 1)),
    use_bias=use_bias,
    dtype=dtype,
    kernel_init=_INIT,
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

  H and W must be multiples of 2**num_downs.
  """

  output_channels: int
  num_downs: int = 8  # 8 = unet_256, 7 = unet_128
  ngf: int = 64
  norm: str = "batch"  # "batch" | "instance" | "none"
  use_dropout: bool = True
  upsample: str = "fast"  # "transpose" | "fast": same function, same parameters
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.num_downs < 5:
      raise ValueError(f"num_downs must be >= 5, got {self.num_downs}")
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
      h = Downsample(inner[level], bias, self.upsample, self.dtype, name=f"down{level}")(h)
      if 0 < level < last:
        h = _norm(self.norm, train, self.dtype, f"down_norm{level}")(h)

    for level in reversed(range(self.num_downs)):
      h = nn.relu(h)
      h = Upsample(outer[level], level == 0 or bias, self.upsample, self.dtype, name=f"up{level}")(
        h
      )
      if level == 0:
        return jnp.tanh(h.astype(jnp.float32))
      h = _norm(self.norm, train, self.dtype, f"up_norm{level}")(h)
      if self.use_dropout and train and 4 <= level < last:
        h = dropout(h, 0.5, self.make_rng("dropout"))
      h = jnp.concatenate([skips[level], h], axis=-1)
    raise AssertionError("unreachable")


class PatchDiscriminator(nn.Module):
  """The reference's n-layer PatchGAN (70x70 receptive field for n_layers=3).

  Input: condition concatenated with image, [N,H,W,C]; output: float32 logits
  [N, H/2**n_layers - 2, W/2**n_layers - 2, 1].
  """

  ndf: int = 64
  n_layers: int = 3
  norm: str = "batch"
  mode: str = "fast"  # of the stride-2 convolutions: "transpose" (plain) | "fast", same function
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bias = _use_bias(self.norm)
    h = Downsample(self.ndf, True, self.mode, self.dtype, name="conv0")(x.astype(self.dtype))
    h = nn.leaky_relu(h, 0.2)
    for n in range(1, self.n_layers + 1):
      features = self.ndf * min(2**n, 8)
      if n < self.n_layers:
        h = Downsample(features, bias, self.mode, self.dtype, name=f"conv{n}")(h)
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

    def conv(features, use_bias, name):
      return nn.Conv(
        features, (1, 1), use_bias=use_bias, dtype=self.dtype, kernel_init=_INIT, name=name
      )

    h = nn.leaky_relu(conv(self.ndf, True, "conv0")(x.astype(self.dtype)), 0.2)
    h = _norm(self.norm, train, self.dtype, "norm1")(conv(self.ndf * 2, bias, "conv1")(h))
    h = nn.leaky_relu(h, 0.2)
    # The reference's last 1x1 conv also uses bias=use_bias.
    return conv(1, bias, "conv2")(h).astype(jnp.float32)


def _dtype(name: Any) -> Any:
  return jnp.dtype(name) if isinstance(name, str) else name


def make_generator(config) -> UNetGenerator:
  """The generator described by config.model; RGB output has 3 channels, Lab (ab) 2."""
  m = config.model
  return UNetGenerator(
    output_channels=3 if config.color_space == "rgb" else 2,
    num_downs=m.num_downs,
    ngf=m.ngf,
    norm=m.norm,
    use_dropout=m.use_dropout,
    upsample=m.upsample,
    dtype=_dtype(m.dtype),
  )


def make_discriminator(config) -> nn.Module:
  """The discriminator named by config.model.discriminator ("patch" | "pixel")."""
  m = config.model
  if m.discriminator == "patch":
    return PatchDiscriminator(
      ndf=m.ndf, n_layers=m.n_layers_d, norm=m.norm, mode=m.upsample, dtype=_dtype(m.dtype)
    )
  if m.discriminator == "pixel":
    return PixelDiscriminator(ndf=m.ndf, norm=m.norm, dtype=_dtype(m.dtype))
  raise ValueError(f"unknown discriminator {m.discriminator!r}")


def count_params(params: Any) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(int(p.size) for p in jax.tree.leaves(params))
