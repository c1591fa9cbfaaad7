"""The networks' 4x4 stride-2 convolution and transposed convolution (torch padding 1, kernel
(4, 4, Cin, Cout)), as parameter-free functions in several equal forms, chosen by `ConvPolicy`:
"plain" (XLA's own), "cpu_tuned" (faster on XLA:CPU, hand-written gradients) or "auto" (cpu_tuned
where lowered for CPU). Why and how: docs/performance.md ("Where the CPU speed comes from").
"""

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

FORMS = ("auto", "plain", "cpu_tuned")

_DIMS = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class ConvPolicy:
  """How `down` and `up` are computed: the form, and the shape thresholds by which "cpu_tuned"
  (and "auto" on CPU) picks among its formulations.

  Frozen and hashable: it is a static argument of the ops' custom VJPs and a module field.
  """

  form: str = "auto"  # "auto" | "plain" | "cpu_tuned"
  # Measured XLA:CPU crossovers (batch 1 and 4, 256x256 U-Net levels). Transposed convolution:
  # per-tap matmuls up to this many input pixels per device (batch included) ...
  matmul_max_pixels: int = 256
  # ... the phase convolution on maps of at least this many pixels per image ...
  phases_min_pixels: int = 32 * 32
  # ... and the lhs-dilated convolution otherwise and below this many output channels.
  min_features: int = 64
  # Stride-2 convolution: per-tap matmuls (forward, kernel gradient) up to this many output
  # pixels per device (batch included), XLA's convolution above.
  down_matmul_max_pixels: int = 64
  # Its kernel gradient, image by image for per-device batches of 2 to this many images of
  # at least this many pixels, for the batch at once otherwise.
  kgrad_split_min_pixels: int = 64 * 64
  kgrad_split_max_batch: int = 8

  def __post_init__(self):
    if self.form not in FORMS:
      raise ValueError(f"unknown convolution form {self.form!r}; expected one of {FORMS}")


AUTO = ConvPolicy()


def migrate_model_config(model_dict: Mapping[str, Any]) -> dict[str, Any]:
  """A saved `config.model` dict with the old `upsample` field ("fast" | "transpose") turned into
  `conv` ("auto" | "plain"): the same function and parameters. Other dicts are returned as is
  (copied)."""
  model = dict(model_dict)
  if "upsample" not in model:
    return model
  old = model.pop("upsample")
  if "conv" not in model:
    forms = {"fast": "auto", "transpose": "plain"}
    if old not in forms:
      raise ValueError(f"model.upsample={old!r} is not one of {', '.join(forms)}")
    model["conv"] = forms[old]
  return model


def mesh_sharding(x: jax.Array) -> Any:
  """`x`'s sharding when it lives on a named mesh (explicit sharding), else None."""
  sharding = jax.typeof(x).sharding
  return sharding if sharding.mesh.axis_names else None


def _local_shape(x: jax.Array) -> tuple[int, ...]:
  """`x`'s shape on one device (its shard's shape on a named mesh)."""
  sharding = mesh_sharding(x)
  return x.shape if sharding is None else sharding.shard_shape(x.shape)


# --- The plain forms ----------------------------------------------------------------------


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


# --- Tuned forward formulations -----------------------------------------------------------

# For output row 2m + r, the taps that land there and the row of the input padded by 1 they read:
# out[2m] = x[m] k[1] + x[m - 1] k[3],  out[2m + 1] = x[m] k[2] + x[m + 1] k[0].
_PHASE_TAPS = (((1, 1), (3, 0)), ((2, 1), (0, 2)))


def conv_transpose_matmul(x: jax.Array, kernel: jax.Array, swap_io: bool = False) -> jax.Array:
  """`conv_transpose` as a matmul per kernel tap, then an overlap-add into the output phases.

  Exact arithmetic (no multiplications by inserted zeros). The 16 taps are one batched matmul
  over the kernel as it lies in memory (the input, which is small here, is broadcast to the
  taps), much faster on XLA:CPU than the lhs-dilated convolution or a matmul per tap on the
  deep levels, whose large kernels make them memory-bound. `swap_io`: `kernel` is
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
  return lax.reshape(out, shape, out_sharding=mesh_sharding(x))


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
  sharding = mesh_sharding(x)
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
  sharding = mesh_sharding(a)
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


# --- Choosing among them by (per-device) shape ----------------------------------------------


def _transpose_forward(
  x: jax.Array, kernel: jax.Array, policy: ConvPolicy, swap_io: bool = False
) -> jax.Array:
  """The fastest of the equal forward formulations of `conv_transpose` for this shape;
  `swap_io`: `kernel` is (4, 4, Cout, Cin), as the adjoint of a down convolution has it."""
  n, h, w, _ = _local_shape(x)
  if kernel.shape[2 if swap_io else 3] >= policy.min_features:
    if h * w >= policy.phases_min_pixels:
      return conv_transpose_phases(x, kernel, swap_io)
    if n * h * w <= policy.matmul_max_pixels:
      return conv_transpose_matmul(x, kernel, swap_io)
  return conv_transpose(x, kernel.transpose(0, 1, 3, 2) if swap_io else kernel)


def _small_down(x: jax.Array, policy: ConvPolicy) -> bool:
  """Whether `conv_down(x, .)` has even input sides and at most `down_matmul_max_pixels` output
  pixels per device."""
  n, h, w, _ = _local_shape(x)
  return h % 2 == 0 and w % 2 == 0 and n * (h // 2) * (w // 2) <= policy.down_matmul_max_pixels


def _down_forward(
  x: jax.Array, kernel: jax.Array, policy: ConvPolicy, swap_io: bool = False
) -> jax.Array:
  if _small_down(x, policy):
    return conv_down_matmul(x, kernel, swap_io)
  return conv_down(x, kernel.transpose(0, 1, 3, 2) if swap_io else kernel)


def _down_kernel_grad(x: jax.Array, kernel: jax.Array, g: jax.Array, policy: ConvPolicy):
  """The kernel gradient of `conv_down(x, kernel)` at output cotangent `g`: per-tap matmuls on
  small maps, and small per-device batches of large maps summed image by image (the same sum,
  in another order)."""
  if _small_down(x, policy):
    return _tap_products(_taps(x), _each_tap(g))

  def grad(x, g):
    return jax.vjp(lambda k: conv_down(x, k), kernel)[1](g)[0]

  n, h, w, _ = _local_shape(x)
  if not (1 < n <= policy.kgrad_split_max_batch and h * w >= policy.kgrad_split_min_pixels):
    return grad(x, g)
  shards = x.shape[0] // n
  sharding = mesh_sharding(x)
  split = None
  if sharding is not None:
    split = jax.sharding.NamedSharding(sharding.mesh, P(sharding.spec[0], None))

  def image(a, i):  # image i of every device's shard: [shards, h, w, c]
    return lax.reshape(a, (shards, n, *a.shape[1:]), out_sharding=split)[:, i]

  return sum(grad(image(x, i), image(g, i)) for i in range(n))


# --- Tuned gradients ----------------------------------------------------------------------


def _down_backward(x, kernel, g, policy):
  """Cotangents of `conv_down` at `g`: its input gradient is a transposed convolution, which
  XLA lowers to an lhs-dilated convolution, very slow on XLA:CPU at deep levels, so it takes
  the faster form by shape."""
  dx = _transpose_forward(g, kernel, policy, swap_io=True)
  dk = _down_kernel_grad(x, kernel, g, policy)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


def _up_backward(x, kernel, g, policy):
  """Cotangents of `conv_transpose` at `g`. conv_transpose(., k) is the adjoint of
  conv_down(., k with its channel axes swapped), so the input gradient is conv_down(g, k^T) and
  the kernel gradient is that stride-2 convolution's kernel gradient with x as its output
  cotangent."""
  dx = _down_forward(g, kernel, policy, swap_io=True)
  if _small_down(g, policy):  # _down_kernel_grad's matmul form, in the kernel's layout (no copy)
    dk = _tap_products(_each_tap(x.astype(dx.dtype)), _taps(g))
  else:
    kt = kernel.transpose(0, 1, 3, 2)
    dk = _down_kernel_grad(g, kt, x.astype(dx.dtype), policy).transpose(0, 1, 3, 2)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


def _plain_vjp(op: Callable) -> Callable:
  def backward(x, kernel, g):
    return jax.vjp(op, x, kernel)[1](g)

  return backward


def _choose(policy: ConvPolicy, tuned: Callable, plain: Callable, *args):
  """`tuned(*args, policy=policy)` for "cpu_tuned"; for "auto", that where the program is
  lowered for CPU and `plain(*args)` elsewhere. Both branches return the same types."""
  tuned = functools.partial(tuned, policy=policy)
  if policy.form == "cpu_tuned":
    return tuned(*args)
  return lax.platform_dependent(*args, cpu=tuned, default=plain)


def _choosing_vjp(tuned_forward: Callable, tuned_backward: Callable, plain: Callable) -> Callable:
  """`plain(x, kernel)` as one custom VJP `op(x, kernel, policy)` whose forward and backward
  passes are both chosen by `_choose`: the residuals, (x, kernel), serve either backward pass,
  so reverse mode keeps no residuals of the branch not taken."""

  def primal(x: jax.Array, kernel: jax.Array, policy: ConvPolicy) -> jax.Array:
    return _choose(policy, tuned_forward, plain, x, kernel)

  def fwd(x, kernel, policy):
    return primal(x, kernel, policy), (x, kernel)

  def bwd(policy, res, g):
    return _choose(policy, tuned_backward, _plain_vjp(plain), *res, g)

  op = jax.custom_vjp(primal, nondiff_argnums=(2,))
  op.defvjp(fwd, bwd)
  return op


_down = _choosing_vjp(_down_forward, _down_backward, conv_down)
_up = _choosing_vjp(_transpose_forward, _up_backward, conv_transpose)


# --- Entry points -------------------------------------------------------------------------


def down(x: jax.Array, kernel: jax.Array, policy: ConvPolicy = AUTO) -> jax.Array:
  """4x4 stride-2 convolution with padding 1 (`conv_down`), computed as `policy` says."""
  if policy.form == "plain":
    return conv_down(x, kernel)
  return _down(x, kernel, policy)


def up(x: jax.Array, kernel: jax.Array, policy: ConvPolicy = AUTO) -> jax.Array:
  """4x4 stride-2 transposed convolution with padding 1 (`conv_transpose`), computed as `policy`
  says."""
  if policy.form == "plain":
    return conv_transpose(x, kernel)
  return _up(x, kernel, policy)
