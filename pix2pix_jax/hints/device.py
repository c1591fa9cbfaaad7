"""Colour hints on device, jit-able: the generator's hint channels (`encode`), training's
simulated hints, evaluation's sampled ones, and the two fills (`nearest_fill`, `propagate`)."""

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import color
from pix2pix_jax.hints import HINT_CHANNELS

MAX_HINT_DISTANCE = 2.0  # propagate's distances stop here (about the farthest corner and an edge)
AB_SCALE = 110.0  # as color.py: ab / 110 keeps the sRGB gamut inside [-1, 1]
_HIGHEST = jax.lax.Precision.HIGHEST  # patch sums are exact sums, not TF32/bf16 matmuls


def encode(ab: jax.Array, mask: jax.Array) -> jax.Array:
  """Hint ab [..., H, W, 2] (Lab units, read where mask) and the hint mask [..., H, W] -> the
  generator's hint channels [..., H, W, 3]."""
  m = jnp.asarray(mask, jnp.float32)[..., None]
  return jnp.concatenate([jnp.asarray(ab, jnp.float32) * m / AB_SCALE, m], axis=-1)


def no_hints(shape: tuple[int, ...]) -> jax.Array:
  """The hint channels of "no hints" for inputs of shape [..., H, W, C]."""
  return jnp.zeros(tuple(shape[:-1]) + (HINT_CHANNELS,), jnp.float32)


def rotate_hue(key: jax.Array, rgb: jax.Array, p: float) -> jax.Array:
  """sRGB images [B, H, W, 3] in [0, 1], each with probability p turned by a uniform random
  angle in the Lab ab plane (L kept; colours leaving the sRGB gamut are clipped)."""
  if p <= 0:
    return rgb
  k_angle, k_apply = jax.random.split(key)
  b = rgb.shape[0]
  angle = jax.random.uniform(k_angle, (b,), maxval=2 * np.pi)
  angle = jnp.where(jax.random.uniform(k_apply, (b,)) < p, angle, 0.0)
  cos, sin = jnp.cos(angle)[:, None, None], jnp.sin(angle)[:, None, None]
  lab = color.rgb_to_lab(rgb)
  a, b_ = lab[..., 1], lab[..., 2]
  return color.lab_to_rgb(jnp.stack([lab[..., 0], cos * a - sin * b_, sin * a + cos * b_], -1))


def scale_chroma(key: jax.Array, rgb: jax.Array, p: float) -> jax.Array:
  """sRGB images [B, H, W, 3] in [0, 1], each with probability p its Lab chroma scaled by a
  uniform random factor in [0, 1] (L and hue kept): dull and gray photos to learn from."""
  if p <= 0:
    return rgb
  k_scale, k_apply = jax.random.split(key)
  b = rgb.shape[0]
  scale = jax.random.uniform(k_scale, (b,))
  scale = jnp.where(jax.random.uniform(k_apply, (b,)) < p, scale, 1.0)[:, None, None, None]
  lab = color.rgb_to_lab(rgb)
  return color.lab_to_rgb(jnp.concatenate([lab[..., :1], lab[..., 1:] * scale], -1))


def _reveal(
  ab: jax.Array, y: jax.Array, x: jax.Array, half: jax.Array, active: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Square patches centred at (y, x) [B, K] of half-side `half` [B, K] (clipped at the border),
  where `active` [B, K]: each reveals its mean true ab. Overlapping patches average.

  Returns (hint ab [B, H, W, 2], mask [B, H, W] bool, each patch's mean [B, K, 2]). Fixed shapes,
  no scatter: a patch is the outer product of a row band and a column band.
  """
  h, w = ab.shape[-3], ab.shape[-2]
  y, x, half, active = (_sharded_like(v, ab) for v in (y, x, half, active))
  rows = (jnp.abs(jnp.arange(h) - y[..., None]) <= half[..., None]) & active[..., None]
  cols = jnp.abs(jnp.arange(w) - x[..., None]) <= half[..., None]
  rows, cols = rows.astype(jnp.float32), cols.astype(jnp.float32)
  ab = jnp.asarray(ab, jnp.float32)
  sums = jnp.einsum("bkh,bhwc,bkw->bkc", rows, ab, cols, precision=_HIGHEST)
  counts = rows.sum(-1) * cols.sum(-1)  # [B, K]
  means = sums / jnp.maximum(counts, 1.0)[..., None]
  cover = jnp.einsum("bkh,bkw->bhw", rows, cols, precision=_HIGHEST)
  total = jnp.einsum("bkh,bkw,bkc->bhwc", rows, cols, means, precision=_HIGHEST)
  return total / jnp.maximum(cover, 1.0)[..., None], cover > 0, means


def _sharded_like(a: jax.Array, ref: jax.Array) -> jax.Array:
  """`a` [B, ...] with its batch axis sharded as `ref`'s (explicit meshes; else unchanged)."""
  sharding = jax.typeof(ref).sharding
  if sharding.mesh.empty or not sharding.spec or sharding.spec[0] is None:
    return a
  spec = jax.sharding.PartitionSpec(sharding.spec[0], *([None] * (a.ndim - 1)))
  return jax.sharding.reshard(a, jax.sharding.NamedSharding(sharding.mesh, spec))


def simulate(
  key: jax.Array,
  ab: jax.Array,
  *,
  points_p: float,
  max_points: int,
  max_patch: int,
) -> tuple[jax.Array, jax.Array]:
  """Training's hints from the true ab [B, H, W, 2]: per image, n points with
  P(n = k) = p (1 - p)^k (k < max_points; the tail is folded into max_points), so a fraction p
  of the images get none; each a square patch of odd side 1, 3, .., max_patch (uniformly) at a
  uniform place, revealing its mean true ab. A pure function of (key, ab).

  Returns (hint ab [B, H, W, 2]: each patch pixel its patch's mean, overlaps averaged; mask
  [B, H, W] bool): `encode`'s arguments.
  """
  b, h, w = ab.shape[0], ab.shape[-3], ab.shape[-2]
  k_n, k_y, k_x, k_s = jax.random.split(key, 4)
  u = jax.random.uniform(k_n, (b,), minval=jnp.finfo(jnp.float32).tiny, maxval=1.0)
  count = jnp.floor(jnp.log(u) / np.log1p(-points_p)) if points_p < 1 else jnp.zeros((b,))
  count = jnp.minimum(count, max_points).astype(jnp.int32)
  active = jnp.arange(max_points) < count[:, None]
  y = jax.random.randint(k_y, (b, max_points), 0, h)
  x = jax.random.randint(k_x, (b, max_points), 0, w)
  half = jax.random.randint(k_s, (b, max_points), 0, max_patch // 2 + 1)
  hint_ab, mask, _ = _reveal(ab, y, x, half, active)
  return hint_ab, mask


def sample_places(
  keys: jax.Array, height: int, width: int, num_points: int
) -> tuple[jax.Array, jax.Array]:
  """`sample_points`' places: (y, x), each int [B, num_points], uniform over a height x width
  image, from each image's own key."""

  def draw(key):
    k_y, k_x = jax.random.split(key)
    return (
      jax.random.randint(k_y, (num_points,), 0, height),
      jax.random.randint(k_x, (num_points,), 0, width),
    )

  return jax.vmap(draw)(keys)


def sample_points(
  keys: jax.Array, ab: jax.Array, num_points: int, patch: int = 1
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Evaluation's hints: exactly `num_points` uniform places in each image of ab [B, H, W, 2],
  drawn from that image's own key (`keys` [B]: so an image's hints do not depend on the batch
  it is in), each revealing the mean true ab of a `patch` x `patch` square (odd) around it.

  Returns (hint ab [B, H, W, 2], mask [B, H, W] bool, nearest-hint fill [B, H, W, 2]).
  """
  if patch < 1 or patch % 2 == 0:
    raise ValueError(f"hint patch must be a positive odd number of pixels, got {patch}")
  b, h, w = ab.shape[0], ab.shape[-3], ab.shape[-2]
  y, x = sample_places(keys, h, w, num_points)
  half = jnp.full((b, num_points), patch // 2)
  hint_ab, mask, means = _reveal(ab, y, x, half, jnp.ones((b, num_points), bool))
  return hint_ab, mask, nearest_fill(means, jnp.stack([y, x], -1), h, w)


def image_keys(seed: int, first_index: jax.Array, count: int) -> jax.Array:
  """Per-image keys [count] of images first_index, first_index + 1, ... for `sample_points`."""
  base = jax.random.key(seed)
  return jax.vmap(lambda i: jax.random.fold_in(base, i))(first_index + jnp.arange(count))


def nearest_fill(point_ab: jax.Array, centres: jax.Array, height: int, width: int) -> jax.Array:
  """The nearest-hint fill: each pixel of a height x width image takes the ab [B, N, 2] of the
  nearest point centre ([B, N, 2] as (y, x); ties go to the first point); [B, H, W, 2]. An
  image without points (N = 0) is 0 (gray)."""
  b, n = centres.shape[0], centres.shape[1]
  if n == 0:
    return jnp.zeros((b, height, width, 2), jnp.float32)
  centres = _sharded_like(centres, point_ab)
  yy = jnp.arange(height, dtype=jnp.float32)[:, None, None]
  xx = jnp.arange(width, dtype=jnp.float32)[None, :, None]
  c = centres.astype(jnp.float32)
  d2 = (yy - c[:, None, None, :, 0]) ** 2 + (xx - c[:, None, None, :, 1]) ** 2  # [B,H,W,N]
  nearest = jnp.argmin(d2, axis=-1).reshape(b, -1)  # [B, H*W]
  fill = jnp.take_along_axis(jnp.asarray(point_ab, jnp.float32), nearest[..., None], axis=1)
  return fill.reshape(b, height, width, 2)


def propagate(
  ab: jax.Array, mask: jax.Array, lum: jax.Array, luminance_weight: float
) -> tuple[jax.Array, jax.Array]:
  """The luminance-aware hint fill: each pixel takes the ab of the hint pixel nearest to it by
  the squared distance (dy^2 + dx^2) / (H W) + luminance_weight (dL / 100)^2, so colour spreads
  through regions of like lightness rather than across edges (luminance_weight 0: the plain
  nearest-hint fill). ab [B, H, W, C] is read at the hint pixels of mask [B, H, W]; lum
  [B, H, W] is Lab L. Returns (the fill [B, H, W, C], 0 (gray) in an image without hints; each
  pixel's distance to its hint [B, H, W], at most MAX_HINT_DISTANCE, which is also "no hint").

  Jump flooding (Rong & Tan 2006): rounds with k = S/2, S/4, .., 1, 1 (S the size rounded up to
  a power of 2) in which each pixel compares its nearest hint so far with those of the 8 pixels
  k away. One compiled round (a scan over the offsets), shifts and selects only; like any jump
  flood it can miss the exact nearest hint for a few pixels (under 1% at 20 hints).
  """
  h, w = mask.shape[-2], mask.shape[-1]
  lum = jnp.asarray(lum, jnp.float32)
  ab = jnp.asarray(ab, jnp.float32)
  yy = jnp.arange(h, dtype=jnp.float32)[:, None]
  xx = jnp.arange(w, dtype=jnp.float32)[None, :]
  far = jnp.float32(8 * max(h, w))  # the position of "no hint": beyond any real one
  mask = jnp.asarray(mask, bool)
  # Per pixel, its nearest hint so far: y, x, L and the ab channels of it (y = far: none yet).
  fields = [jnp.where(mask, yy, far), jnp.where(mask, xx, far), jnp.where(mask, lum, 0.0)]
  fields += [jnp.where(mask, ab[..., c], 0.0) for c in range(ab.shape[-1])]
  seed = jnp.stack(fields)
  weight = luminance_weight / 100.0**2

  def distance(s: jax.Array) -> jax.Array:
    return ((yy - s[0]) ** 2 + (xx - s[1]) ** 2) / (h * w) + weight * (lum - s[2]) ** 2

  first = 1 << max(0, (max(h, w) - 1).bit_length() - 1)
  rounds = [first >> i for i in range(first.bit_length())] + [1]
  offsets = np.array(
    [(k * dy, k * dx) for k in rounds for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx],
    np.int32,
  )
  pad = [(0, 0)] * (seed.ndim - 2) + [(first, first), (first, first)]
  edge = jnp.zeros((seed.shape[0],) + (1,) * (seed.ndim - 1)).at[0].set(far)

  def round_step(carry, offset):
    seed, best = carry
    padded = jnp.pad(seed - edge, pad) + edge  # outside the image: no hint
    start = (0,) * (seed.ndim - 2) + (first + offset[0], first + offset[1])
    candidate = jax.lax.dynamic_slice(padded, start, seed.shape)
    d = distance(candidate)
    closer = d < best
    return (jnp.where(closer, candidate, seed), jnp.where(closer, d, best)), None

  (seed, best), _ = jax.lax.scan(round_step, (seed, distance(seed)), offsets)
  found = seed[0] < far
  fill = jnp.where(found[..., None], jnp.moveaxis(seed[3:], 0, -1), 0.0)
  far_off = jnp.float32(MAX_HINT_DISTANCE)
  return fill, jnp.where(found, jnp.sqrt(jnp.minimum(best, far_off**2)), far_off)
