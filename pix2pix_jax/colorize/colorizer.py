"""Colorizer: a trained generator applied to frames of any size, batched and sharded.

The generator sees only luminance, resized to a square render size (by default the training
crop size). Its chroma (Lab ab; for RGB models the ab of the predicted RGB) is upsampled back to
the frame's size and put on the frame's own full-resolution lightness, so the detail and
brightness of the source are kept exactly; only the colour comes from the model.

Three jit'd functions, so that a new frame size never recompiles the generator:
  prepare  (per frame shape)  uint8 frames -> full-res L, render-size model input
  predict  (once)             model input -> ab at render size (the generator)
  compose  (per frame shape)  full-res L + ab -> uint8 RGB
Batches have a fixed size (the last one is padded), a multiple of the device count, and are
sharded over the ("data",) mesh; the generator's variables are replicated.

Colour controls, applied in compose at full resolution: a chroma gain (`saturation`, 1 = as
predicted, 0 = gray) and a reference photo's colour statistics (`reference`: per luminance band,
the predicted a and b are shifted and scaled to the reference's mean and spread, see
`color.match_chroma`).

Colour hints (a generator trained with `model.hints`): `colorize_images(..., hints=[...])` takes
per image a scribble (RGBA, the image's size), a point list or `hints.Hints`; `set_frame_hints`
gives one set to every frame of `__call__` / `colorize_batch` (a clip's). They are rasterised at
the render size (hints.rasterize) and fed as the generator's extra input channels; a hint model
given none sees "no hints".

Optional temporal smoothing (video): an exponential moving average of the predicted ab across
consecutive frames, reset at scene cuts, detected as a large change of the luminance histogram.
"""

import functools
import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from pix2pix_jax import color, hints, parallel, xla_flags
from pix2pix_jax.export import p2p_file
from pix2pix_jax.models import render

_HIST_BINS = 32
# Total-variation distance between consecutive luminance histograms above which a frame starts
# a new shot (0: identical histograms, 1: disjoint). Pans and fades stay well below this.
DEFAULT_CUT_THRESHOLD = 0.3
# --reference: the largest factor by which the spread of the predicted chroma is stretched toward
# the reference's (a nearly uniform prediction would otherwise have its noise amplified).
REFERENCE_MAX_GAIN = 4.0
# Reference photos are measured at most this many pixels on a side (statistics barely change).
_REFERENCE_MAX_SIDE = 512


class Prediction(NamedTuple):
  """A batch's generator output before smoothing and composing (device arrays, padded)."""

  lightness: jax.Array  # Lab L [B,H,W,1] at the frames' size
  ab: jax.Array  # predicted ab [B,r,r,2]
  x: jax.Array  # the model's lightness input [B,r,r,1] (scene cuts are measured on it)
  count: int  # frames in the batch; the rest is padding


class SmoothState(NamedTuple):
  """What temporal smoothing carries from one batch to the next."""

  ab: jax.Array  # [r, r, 2] smoothed ab of the last frame
  hist: jax.Array  # [bins] luminance histogram of the last frame
  started: jax.Array  # bool: whether a previous frame exists


def _prepare(frames: jax.Array, *, color_space: str, size: int) -> tuple[jax.Array, jax.Array]:
  """uint8 [B,H,W,3|1] -> (Lab L [B,H,W,1], model input [B,size,size,1])."""
  rgb = color.uint8_to_float(frames)
  if rgb.shape[-1] == 1:
    rgb = jnp.broadcast_to(rgb, rgb.shape[:-1] + (3,))
  lightness = color.luminance(rgb)
  x = color.model_input(rgb, color_space)
  x = jax.image.resize(x, (x.shape[0], size, size, 1), "linear", antialias=True)
  return lightness, jnp.clip(x, -1.0, 1.0)


def _compose(
  lightness: jax.Array,
  ab: jax.Array,
  saturation: jax.Array,
  reference: color.ChromaStats | None,
) -> jax.Array:
  """Lab L [B,H,W,1] + ab [B,r,r,2] -> uint8 RGB [B,H,W,3] (ab upsampled to H, W).

  With `reference`, ab is first matched to its statistics (each frame's own statistics as the
  source); then it is multiplied by `saturation`.
  """
  b, h, w, _ = lightness.shape
  ab = jax.image.resize(ab, (b, h, w, 2), "linear")
  if reference is not None:
    source = color.chroma_stats(lightness, ab)
    ab = color.match_chroma(lightness, ab, source, reference, max_gain=REFERENCE_MAX_GAIN)
  return color.float_to_uint8(color.combine(lightness, ab * saturation))


def reference_stats(rgb: np.ndarray) -> color.ChromaStats:
  """A reference photo (uint8 [H,W,3]) -> its per-band chroma statistics for `Colorizer`."""
  rgb = np.asarray(rgb)
  step = max(1, -(-max(rgb.shape[:2]) // _REFERENCE_MAX_SIDE))
  lab = color.rgb_to_lab(color.uint8_to_float(rgb[::step, ::step, :3]))
  return jax.device_get(color.chroma_stats(lab[..., :1], lab[..., 1:]))


def side_by_side(source: np.ndarray, result: np.ndarray) -> np.ndarray:
  """The --compare layout: source left, result right, same height ([..., H, W, C] -> 2W)."""
  return np.concatenate([source, result], axis=-2)


def luminance_histograms(x: jax.Array) -> jax.Array:
  """Normalised histograms [B, bins] of model inputs [B,r,r,1] in [-1, 1]."""
  x = x[:, ::2, ::2, 0]
  bins = jnp.clip(jnp.floor((x + 1.0) * 0.5 * _HIST_BINS), 0, _HIST_BINS - 1).astype(jnp.int32)
  counts = jax.nn.one_hot(bins, _HIST_BINS, dtype=jnp.float32).sum(axis=(1, 2))
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
  """EMA of ab over the batch's frames in order, continuing from `state`.

  Returns (smoothed ab, per-frame cut flags, new state); frames at index >= num_valid are
  padding and leave the state unchanged.
  """
  # The scan runs along the batch axis, so the (small, render-size) ab is gathered first.
  ab = jax.sharding.reshard(ab, replicated)
  hists = jax.sharding.reshard(luminance_histograms(x), replicated)
  valid = jnp.arange(ab.shape[0]) < num_valid

  def step(carry: SmoothState, inputs: tuple[jax.Array, ...]) -> tuple[SmoothState, Any]:
    ab_t, hist_t, valid_t = inputs
    distance = 0.5 * jnp.abs(hist_t - carry.hist).sum()
    cut = jnp.logical_not(carry.started) | (distance > cut_threshold)
    smoothed = jnp.where(cut, ab_t, strength * carry.ab + (1.0 - strength) * ab_t)
    new = SmoothState(
      ab=jnp.where(valid_t, smoothed, carry.ab),
      hist=jnp.where(valid_t, hist_t, carry.hist),
      started=carry.started | valid_t,
    )
    return new, (smoothed, cut & valid_t)

  state, (smoothed, cuts) = jax.lax.scan(step, state, (ab, hists, valid))
  return smoothed, cuts, state


class Colorizer:
  """Colourises uint8 frames with a generator; see the module docstring."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    variables: dict[str, Any],
    *,
    render_size: int | None = None,
    batch_size: int = 8,
    saturation: float = 1.0,
    reference: np.ndarray | color.ChromaStats | None = None,
    predict: Callable[[dict[str, Any], jax.Array], jax.Array] | None = None,
  ):
    """saturation: chroma gain (1 as predicted, 0 gray, 2 twice the chroma up to the gamut).
    reference: a photo (uint8 [H,W,3]) or its `reference_stats`; colours move toward it.
    predict: (variables, model input) -> ab; default: `networks.generator_predict(config)`.
    """
    self.config = config
    self.color_space = config.color_space
    size = render.check_render_size(
      int(render_size or config.data.crop_size), config.model.num_downs
    )
    self.render_size = size
    if saturation < 0:
      raise ValueError(f"saturation must be >= 0, got {saturation}")
    self.saturation = jnp.float32(saturation)
    if reference is not None and not isinstance(reference, color.ChromaStats):
      reference = reference_stats(reference)
    self.reference = reference
    self.batch_size = parallel.device_multiple(batch_size)
    self.mesh = parallel.make_mesh()
    self._batch_sharding = parallel.batch_sharding(self.mesh)
    self._x_sharding = NamedSharding(self.mesh, P("data", None, None, None))
    self.variables = jax.device_put(
      {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})},
      parallel.replicated(self.mesh),
    )
    color_space = self.color_space
    if predict is None:
      from pix2pix_jax.models import networks  # flax: not needed by exported models

      predict = networks.generator_predict(config)
    self._prepare = jax.jit(functools.partial(_prepare, color_space=color_space, size=size))
    self._predict = jax.jit(predict, compiler_options=xla_flags.forward_compiler_options())
    self._compose = jax.jit(_compose)
    self._smooth = jax.jit(functools.partial(_smooth, replicated=parallel.replicated(self.mesh)))
    # Colour hints: the generator's extra input channels (hints.py).
    self.takes_hints = hints.enabled(config)
    self._frame_hints: Any = None
    self._frame_rasters: dict[tuple[int, int], jax.Array] = {}
    self._join = jax.jit(lambda x, h: jnp.concatenate([x, h], axis=-1))

  @classmethod
  def from_workdir(cls, workdir: str, *, step: int | None = None, **kwargs: Any) -> "Colorizer":
    """Restores the generator (only) and its config from a training workdir."""
    from pix2pix_jax import checkpoint  # orbax: not needed by exported models

    config, variables = checkpoint.restore_generator(workdir, step)
    return cls(config, variables, **kwargs)

  @classmethod
  def from_exported(
    cls,
    path: str,
    *,
    render_size: int | None = None,
    batch_size: int | None = None,
    **kwargs: Any,
  ) -> "Colorizer":
    """A .p2p file from `pix2pix-export` (jax and numpy only: no flax, orbax or TensorFlow).

    Its generator runs on each local device with the exported per-device batch, so the batch
    is that times the device count; render size and batch size are fixed by the export.
    """
    model = p2p_file.load(path)
    devices = len(jax.devices())
    fixed = {"render size": (render_size, model.render_size)}
    fixed["batch size"] = (batch_size, model.batch_per_device * devices)
    for name, (asked, exported) in fixed.items():
      if asked is not None and asked != exported:
        raise p2p_file.ModelFileError(
          f"{path}: exported for {name} {exported} here, not {asked} (export again to change it)"
        )
    config = ml_collections.ConfigDict(
      {
        "color_space": model.color_space,
        "data": {"crop_size": model.render_size},
        "model": {
          "num_downs": int(model.metadata["num_downs"]),
          "hints": model.hints,
          "hint_luminance_weight": model.metadata.get("hint_luminance_weight", 0.0),
        },
      }
    )
    mesh = parallel.make_mesh()
    per_device = jax.shard_map(
      model.exported.call, mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data")
    )
    return cls(
      config,
      model.variables,
      render_size=model.render_size,
      batch_size=model.batch_per_device * devices,
      predict=per_device,
      **kwargs,
    )

  def check_takes_hints(self, what: str = "this model") -> None:
    """HintsError unless the generator was trained with colour hints."""
    if not self.takes_hints:
      raise hints.HintsError(
        f"{what} was trained without colour hints (config.model.hints=False): colourise it "
        "without hints, or train one with hints (configs/quickstart_hints.py)"
      )

  def set_frame_hints(self, value: Any) -> None:
    """Hints for every frame that `__call__` and `colorize_batch` colourise (a clip's): anything
    `hints.as_hints` takes, checked against the frame size when used; None for no hints."""
    if value is not None:
      self.check_takes_hints()
    self._frame_hints = value
    self._frame_rasters = {}

  def frame_hints_digest(self) -> str | None:
    """A digest of the frame hints (for resumable chunks' fingerprints); None without."""
    value = self._frame_hints
    if value is None:
      return None
    h = hashlib.sha256()
    if isinstance(value, hints.Hints):
      h.update(np.ascontiguousarray(value.ab).tobytes())
      h.update(np.ascontiguousarray(value.mask).tobytes())
    elif isinstance(value, np.ndarray):
      h.update(np.ascontiguousarray(value).tobytes())
    else:
      h.update(repr(value).encode())
    return h.hexdigest()

  def _hint_batch(self, rasters: list[np.ndarray | None]) -> jax.Array:
    """Rasterised hints (or None: no hints) of up to batch_size images -> the batch's hint
    channels [batch_size, r, r, 3], sharded as the model input."""
    r = self.render_size
    batch = np.zeros((self.batch_size, r, r, hints.HINT_CHANNELS), np.float32)
    for i, raster in enumerate(rasters):
      if raster is not None:
        batch[i] = raster
    return jax.device_put(batch, self._x_sharding)

  def _frame_hint_batch(self, height: int, width: int) -> jax.Array:
    key = (height, width)
    if key not in self._frame_rasters:
      value = self._frame_hints
      raster = None
      if value is not None:
        raster = hints.rasterize(hints.as_hints(value, height, width), self.render_size)
      self._frame_rasters[key] = self._hint_batch([raster] * self.batch_size)
    return self._frame_rasters[key]

  def initial_state(self) -> SmoothState:
    """The smoothing state before a clip's first frame."""
    r = self.render_size
    return SmoothState(
      ab=jnp.zeros((r, r, 2), jnp.float32),
      hist=jnp.zeros((_HIST_BINS,), jnp.float32),
      started=jnp.zeros((), bool),
    )

  def _shard(self, batch: np.ndarray) -> jax.Array:
    return jax.device_put(batch, self._batch_sharding)

  def pad(self, frames: np.ndarray) -> np.ndarray:
    """Pads [n<=B,...] to the batch size by repeating the last frame."""
    n = len(frames)
    if n == self.batch_size:
      return frames
    if n > self.batch_size or n == 0:
      raise ValueError(f"expected 1..{self.batch_size} frames, got {n}")
    reps = np.repeat(frames[-1:], self.batch_size - n, axis=0)
    return np.concatenate([frames, reps], axis=0)

  def colorize_batch(
    self,
    frames: np.ndarray,
    *,
    state: SmoothState | None = None,
    strength: float = 0.0,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
  ) -> tuple[jax.Array, SmoothState | None, jax.Array | None]:
    """One batch of up to batch_size frames (uint8 [n,H,W,3]); does not block.

    Returns (uint8 [batch_size,H,W,3] on device, padded; the new smoothing state or None;
    per-frame scene-cut flags or None). Smoothing runs when `state` is given.
    """
    return self.finish(self.predict(frames), state, strength=strength, cut_threshold=cut_threshold)

  def predict(self, frames: np.ndarray) -> Prediction:
    """The generator's chroma for up to batch_size frames, not yet smoothed nor composed."""
    batch = self._shard(self.pad(_with_channels(frames)))
    lightness, x = self._prepare(batch)
    inputs = x
    if self.takes_hints:
      inputs = self._join(x, self._frame_hint_batch(*frames.shape[1:3]))
    return Prediction(lightness, self._predict(self.variables, inputs), x, len(frames))

  def smooth(
    self,
    prediction: Prediction,
    state: SmoothState,
    *,
    strength: float,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
  ) -> tuple[jax.Array, SmoothState, jax.Array]:
    """(smoothed ab, the state after the batch's frames, per-frame scene-cut flags)."""
    ab, cuts, state = self._smooth(
      prediction.ab,
      prediction.x,
      jnp.int32(prediction.count),
      state,
      jnp.float32(strength),
      jnp.float32(cut_threshold),
    )
    return jax.device_put(ab, self._batch_sharding), state, cuts

  def finish(
    self,
    prediction: Prediction,
    state: SmoothState | None,
    *,
    strength: float = 0.0,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
  ) -> tuple[jax.Array, SmoothState | None, jax.Array | None]:
    """A prediction smoothed from `state` (where given) and composed: `colorize_batch`'s result."""
    ab, cuts = prediction.ab, None
    if state is not None:
      ab, state, cuts = self.smooth(
        prediction, state, strength=strength, cut_threshold=cut_threshold
      )
    return self._compose(prediction.lightness, ab, self.saturation, self.reference), state, cuts

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,3] or [N,H,W] -> uint8 [N,H,W,3], any N, frames colourised independently."""
    frames = _with_channels(np.asarray(frames))
    if frames.dtype != np.uint8:
      raise TypeError(f"expected uint8 frames, got {frames.dtype}")
    results = []
    for start in range(0, len(frames), self.batch_size):
      chunk = frames[start : start + self.batch_size]
      out, _, _ = self.colorize_batch(chunk)
      results.append(out)
    if not results:
      return np.zeros(frames.shape[:3] + (3,), np.uint8)
    return np.concatenate([np.asarray(r) for r in results], axis=0)[: len(frames)]

  def colorize_images(
    self, images: list[np.ndarray], hints: list[Any] | None = None
  ) -> list[np.ndarray]:
    """Images of different sizes (uint8 [H,W,3] or [H,W]) -> colourised uint8 [H,W,3].

    hints: one entry per image, each None (no hints) or anything `hints.as_hints` takes (an RGBA
    scribble of the image's size, a point list, `hints.Hints`); only for a model trained with
    hints (else HintsError, as for hints of the wrong size).

    The generator runs on full batches of render-size inputs; only the cheap prepare and
    compose steps compile per image size.
    """
    rasters = self._rasters(images, hints)
    prepared = [self._prepare(_with_channels(np.asarray(im)[None])) for im in images]
    outputs = []
    for start in range(0, len(prepared), self.batch_size):
      group = prepared[start : start + self.batch_size]
      x = jnp.concatenate([g[1] for g in group], axis=0)
      pad = self.batch_size - x.shape[0]
      x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0) if pad else x
      # The same sharding (spelled the same way) as prepare's output, so predict's cache hits.
      x = jax.device_put(x, self._x_sharding)
      if self.takes_hints:
        x = self._join(x, self._hint_batch(rasters[start : start + self.batch_size]))
      ab = self._predict(self.variables, x)
      ab = np.asarray(ab)
      for i, (lightness, _) in enumerate(group):
        rgb = self._compose(lightness, ab[i : i + 1], self.saturation, self.reference)
        outputs.append(np.asarray(rgb)[0])
    return outputs

  def _rasters(self, images: list[np.ndarray], given: list[Any] | None) -> list[Any]:
    """Each image's hints rasterised at the render size, or None."""
    if given is None:
      return [None] * len(images)
    if len(given) != len(images):
      raise ValueError(f"{len(given)} hint entries for {len(images)} images")
    if any(g is not None for g in given):
      self.check_takes_hints()
    return [
      None if g is None else hints.rasterize(hints.as_hints(g, *np.shape(im)[:2]), self.render_size)
      for im, g in zip(images, given, strict=True)
    ]


def _with_channels(frames: np.ndarray) -> np.ndarray:
  """[N,H,W] -> [N,H,W,1]; [N,H,W,4] (RGBA) -> [N,H,W,3]; others unchanged."""
  if frames.ndim == 3:
    return frames[..., None]
  if frames.ndim == 4 and frames.shape[-1] == 4:
    return frames[..., :3]
  if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
    raise ValueError(f"expected frames [N,H,W], [N,H,W,1] or [N,H,W,3], got {frames.shape}")
  return frames
