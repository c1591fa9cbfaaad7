"""A clip's time axis: scene cuts and chroma smoothing as a pure jit'd function of a carried
state, and the temporal consistency figure (docs/video.md)."""

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import metrics, parallel

DEFAULT_SMOOTHING = 0.7  # chosen by measurement: most of the steadiness, little lag
# A frame starts a new shot where it differs from the previous one by more than this: the
# total-variation distance of their luminance histograms (0: identical, 1: disjoint) plus the mean
# absolute difference of their luminance on the model input's scale, [-1, 1]. Pans and fades stay
# well below it; the histogram alone missed cuts between shots of one tone (docs/video.md).
DEFAULT_CUT_THRESHOLD = 0.3
CUT_MEASURE = "histogram total variation + mean absolute difference"  # in resume fingerprints
CUT_HIST_BINS = 32  # luminance histogram bins of the cut measure (also hint_track's)


@dataclasses.dataclass(frozen=True)
class Smoothing:
  """strength: 0 (off) .. <1, the weight of the previous frame's chroma in the moving average."""

  strength: float = DEFAULT_SMOOTHING
  cut_threshold: float = DEFAULT_CUT_THRESHOLD

  @property
  def on(self) -> bool:
    return self.strength > 0


class SmoothState(NamedTuple):
  """What smoothing carries from one batch to the next."""

  ab: jax.Array  # [r, r, 2] smoothed ab of the last frame
  hist: jax.Array  # [bins] luminance histogram of the last frame
  luma: jax.Array  # [s, s] the last frame's `small_luminance`
  started: jax.Array  # bool: whether a previous frame exists


def initial_state(render_size: int) -> SmoothState:
  """The state before a clip's first frame."""
  return SmoothState(
    ab=jnp.zeros((render_size, render_size, 2), jnp.float32),
    hist=jnp.zeros((CUT_HIST_BINS,), jnp.float32),
    luma=jnp.zeros(((render_size + 1) // 2,) * 2, jnp.float32),
    started=jnp.zeros((), bool),
  )


def small_luminance(x: jax.Array) -> jax.Array:
  """Model inputs [B,r,r,1] -> every other pixel's, [B,s,s], in [-1, 1]."""
  return x[:, ::2, ::2, 0]


def luminance_histograms(x: jax.Array) -> jax.Array:
  """Normalised histograms [B, bins] of model inputs [B,r,r,1] in [-1, 1]."""
  bins = jnp.floor((small_luminance(x) + 1.0) * 0.5 * CUT_HIST_BINS)
  bins = jnp.clip(bins, 0, CUT_HIST_BINS - 1).astype(jnp.int32)
  counts = jax.nn.one_hot(bins, CUT_HIST_BINS, dtype=jnp.float32).sum(axis=(1, 2))
  return counts / counts.sum(axis=-1, keepdims=True)


def _smooth(
  ab: jax.Array,
  x: jax.Array,
  num_valid: jax.Array,
  state: SmoothState,
  strength: jax.Array,
  cut_threshold: jax.Array,
  *,
  replicated: jax.sharding.NamedSharding,
) -> tuple[jax.Array, jax.Array, SmoothState]:
  """EMA of ab over the batch's frames in order, continuing from `state`; a frame far from the
  previous one (DEFAULT_CUT_THRESHOLD's measure) starts afresh (a cut).

  Returns (smoothed ab, per-frame cut flags, new state); frames at index >= num_valid are
  padding and leave the state unchanged.
  """
  # The scan runs along the batch axis, so the (small, render-size) ab is gathered first.
  ab = jax.sharding.reshard(ab, replicated)
  hists = jax.sharding.reshard(luminance_histograms(x), replicated)
  lumas = jax.sharding.reshard(small_luminance(x), replicated)
  valid = jnp.arange(ab.shape[0]) < num_valid

  def step(carry: SmoothState, inputs: tuple[jax.Array, ...]) -> tuple[SmoothState, Any]:
    ab_t, hist_t, luma_t, valid_t = inputs
    distance = 0.5 * jnp.abs(hist_t - carry.hist).sum() + jnp.abs(luma_t - carry.luma).mean()
    cut = jnp.logical_not(carry.started) | (distance > cut_threshold)
    smoothed = jnp.where(cut, ab_t, strength * carry.ab + (1.0 - strength) * ab_t)
    new = SmoothState(
      ab=jnp.where(valid_t, smoothed, carry.ab),
      hist=jnp.where(valid_t, hist_t, carry.hist),
      luma=jnp.where(valid_t, luma_t, carry.luma),
      started=carry.started | valid_t,
    )
    return new, (smoothed, cut & valid_t)

  state, (smoothed, cuts) = jax.lax.scan(step, state, (ab, hists, lumas, valid))
  return smoothed, cuts, state


@functools.cache
def _smooth_program(mesh: jax.sharding.Mesh) -> Any:
  return jax.jit(functools.partial(_smooth, replicated=parallel.replicated(mesh)))


def smooth(
  ab: jax.Array,
  x: jax.Array,
  count: int,
  state: SmoothState,
  smoothing: Smoothing,
  mesh: jax.sharding.Mesh,
) -> tuple[jax.Array, SmoothState, jax.Array]:
  """A batch's predicted ab [B,r,r,2] (of model inputs x, `count` of them real) smoothed from
  `state`: (smoothed ab, sharded over `mesh` as the batch, the state after the batch's frames,
  per-frame cut flags)."""
  ab, cuts, state = _smooth_program(mesh)(
    ab,
    x,
    jnp.int32(count),
    state,
    jnp.float32(smoothing.strength),
    jnp.float32(smoothing.cut_threshold),
  )
  return jax.device_put(ab, parallel.batch_sharding(mesh)), state, cuts


def warmup_frames(strength: float) -> int:
  """Frames after which a fresh smoothing state is within 1/1024 of any other: s^W <= 1/1024,
  below 1/255 of a pixel value."""
  if strength <= 0:
    return 0
  return math.ceil(math.log(1 / 1024) / math.log(strength))


def head_frames(strength: float, batch_size: int) -> int:
  """A chunk's head (the frames smoothed from the chunk before): `warmup_frames` rounded up to
  whole batches."""
  return -(-warmup_frames(strength) // batch_size) * batch_size


def _small(frames: np.ndarray, max_side: int = 96) -> np.ndarray:
  """Strided downsampling for the consistency figure (colour distributions barely change)."""
  step = max(1, int(np.ceil(max(frames.shape[1:3]) / max_side)))
  return frames[:, ::step, ::step]


class Consistency:
  """Running mean of metrics.temporal_consistency over a stream of batches."""

  def __init__(self, last: np.ndarray | None = None):
    """last: the (small) frame before the first one added, where known."""
    self.total, self.count, self.last = 0.0, 0, last

  def add(self, frames: np.ndarray) -> None:
    small = _small(frames)
    if self.last is not None:
      small = np.concatenate([self.last, small], axis=0)
    self.last = small[-1:]
    if len(small) > 1:
      values = np.asarray(metrics.temporal_consistency(small.astype(np.float32) / 255.0))
      self.total += float(values.sum())
      self.count += len(values)

  @property
  def mean(self) -> float | None:
    return self.total / self.count if self.count else None
