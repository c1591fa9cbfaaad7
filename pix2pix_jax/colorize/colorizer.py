"""Colorizer: a generator applied to uint8 frames of any size, batched over the device mesh.

Stateless: a model (colorize/model.py), colour controls and three jit'd functions, prepare
(frames -> full-size L, render-size input), predict (the generator) and compose (chroma put on
the frame's own lightness). Hints are an argument of each call (docs/video.md).
"""

import copy
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from pix2pix_jax import color, hints, parallel, xla_flags
from pix2pix_jax.colorize import model as model_lib
from pix2pix_jax.hints import files as hint_files
from pix2pix_jax.hints import raster as hint_raster

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


def _controls(
  saturation: float, reference: np.ndarray | color.ChromaStats | None
) -> tuple[jax.Array, color.ChromaStats | None]:
  """The colour controls checked: (saturation as float32, the reference's statistics)."""
  if saturation < 0:
    raise ValueError(f"saturation must be >= 0, got {saturation}")
  if reference is not None and not isinstance(reference, color.ChromaStats):
    reference = reference_stats(reference)
  return jnp.float32(saturation), reference


def side_by_side(source: np.ndarray, result: np.ndarray) -> np.ndarray:
  """The --compare layout: source left, result right, same height ([..., H, W, C] -> 2W)."""
  return np.concatenate([source, result], axis=-2)


class Colorizer:
  """A model and colour controls; every call is a pure function of its arguments."""

  def __init__(
    self,
    model: model_lib.Model,
    *,
    saturation: float = 1.0,
    reference: np.ndarray | color.ChromaStats | None = None,
  ):
    """saturation: chroma gain (1 as predicted, 0 gray, 2 twice the chroma up to the gamut).
    reference: a photo (uint8 [H,W,3]) or its `reference_stats`; colours move toward it.
    """
    self.spec = model.spec
    self.saturation, self.reference = _controls(saturation, reference)
    self.mesh = parallel.make_mesh()
    self._batch_sharding = parallel.batch_sharding(self.mesh)
    self._x_sharding = NamedSharding(self.mesh, P("data", None, None, None))
    variables = {"params": model.variables["params"]}
    variables["batch_stats"] = model.variables.get("batch_stats", {})
    self.variables = jax.device_put(variables, parallel.replicated(self.mesh))
    size, color_space = self.spec.render_size, self.spec.color_space
    self._prepare = jax.jit(functools.partial(_prepare, color_space=color_space, size=size))
    self._predict = jax.jit(model.predict, compiler_options=xla_flags.forward_compiler_options())
    self._compose = jax.jit(_compose)
    self._join = jax.jit(lambda x, h: jnp.concatenate([x, h], axis=-1))

  def with_controls(
    self,
    *,
    saturation: float = 1.0,
    reference: np.ndarray | color.ChromaStats | None = None,
  ) -> "Colorizer":
    """The same model with other colour controls, sharing this one's compiled functions."""
    other = copy.copy(self)
    other.saturation, other.reference = _controls(saturation, reference)
    return other

  @classmethod
  def from_config(cls, config: Any, variables: dict[str, Any], **kwargs: Any) -> "Colorizer":
    """A training config and generator variables; render_size, batch_size and the colour
    controls as keywords."""
    return cls(model_lib.from_config(config, variables, **_pop_shape(kwargs)), **kwargs)

  @classmethod
  def from_workdir(cls, workdir: str, *, step: int | None = None, **kwargs: Any) -> "Colorizer":
    """The generator (only) of a training workdir's latest checkpoint, or of `step`."""
    return cls(model_lib.from_workdir(workdir, step=step, **_pop_shape(kwargs)), **kwargs)

  @classmethod
  def from_exported(cls, path: str, **kwargs: Any) -> "Colorizer":
    """A .p2p file from `pix2pix-export` (jax and numpy only); render and batch size are fixed
    by the export."""
    return cls(model_lib.from_exported(path, **_pop_shape(kwargs)), **kwargs)

  @property
  def batch_size(self) -> int:
    return self.spec.batch_size

  @property
  def render_size(self) -> int:
    return self.spec.render_size

  @property
  def color_space(self) -> str:
    return self.spec.color_space

  @property
  def takes_hints(self) -> bool:
    return self.spec.hints

  def check_takes_hints(self, what: str = "this model") -> None:
    """HintsError unless the generator was trained with colour hints."""
    if not self.takes_hints:
      raise hints.HintsError(
        f"{what} was trained without colour hints (config.model.hints=False): colourise it "
        "without hints, or train one with hints (configs/quickstart_hints.py)"
      )

  def rasterize(self, value: Any, height: int, width: int, **names: str) -> np.ndarray:
    """Hints for a height x width image (anything `hint_files.as_hints` takes) rasterised at
    the render size; HintsError where the model takes none or they do not fit the image."""
    self.check_takes_hints()
    return hint_raster.rasterize(
      hint_files.as_hints(value, height, width, **names), self.render_size
    )

  def hint_batch(self, rasters: Sequence[np.ndarray | None]) -> jax.Array:
    """Rasterised hints of up to batch_size images (None: no hints) -> the batch's hint
    channels [batch_size, r, r, 3], sharded as the model input."""
    r = self.render_size
    batch = np.zeros((self.batch_size, r, r, hints.HINT_CHANNELS), np.float32)
    for i, raster in enumerate(rasters):
      if raster is not None:
        batch[i] = raster
    return jax.device_put(batch, self._x_sharding)

  @functools.cached_property
  def _no_hints(self) -> jax.Array:
    return self.hint_batch([])

  def pad(self, frames: np.ndarray) -> np.ndarray:
    """Pads [n<=B,...] to the batch size by repeating the last frame."""
    n = len(frames)
    if n == self.batch_size:
      return frames
    if n > self.batch_size or n == 0:
      raise ValueError(f"expected 1..{self.batch_size} frames, got {n}")
    reps = np.repeat(frames[-1:], self.batch_size - n, axis=0)
    return np.concatenate([frames, reps], axis=0)

  def generate(self, x: jax.Array, hint_batch: jax.Array | None = None) -> jax.Array:
    """The generator's chroma [B,r,r,2] for `prepare`'s input x with `hint_batch` (None: no
    hints); `predict` without the prepare, for an input prepared once (the app's photo)."""
    if self.takes_hints:
      x = self._join(x, self._no_hints if hint_batch is None else hint_batch)
    return self._predict(self.variables, x)

  def prepare(self, frames: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """Up to batch_size equal-size frames (uint8 [n,H,W,3|1]), padded and sharded -> (Lab L
    [B,H,W,1], the generator's lightness input [B,r,r,1])."""
    return self._prepare(jax.device_put(self.pad(_with_channels(frames)), self._batch_sharding))

  def predict(self, frames: np.ndarray, hint_batch: jax.Array | None = None) -> Prediction:
    """The generator's chroma for up to batch_size equal-size frames (uint8 [n,H,W,3|1]);
    `hint_batch` from `hint_batch` (None: no hints). Does not block."""
    lightness, x = self.prepare(frames)
    return Prediction(lightness, self.generate(x, hint_batch), x, len(frames))

  def compose(self, lightness: jax.Array, ab: jax.Array) -> jax.Array:
    """Chroma ab [B,r,r,2] on lightness [B,H,W,1] with the colour controls -> uint8 [B,H,W,3]."""
    return self._compose(lightness, ab, self.saturation, self.reference)

  def __call__(self, frames: np.ndarray, hints: Any = None) -> np.ndarray:
    """uint8 [N,H,W,3] or [N,H,W] -> uint8 [N,H,W,3], any N, frames colourised independently;
    `hints` (anything `hint_files.as_hints` takes) for every frame, or None."""
    frames = _with_channels(np.asarray(frames))
    if frames.dtype != np.uint8:
      raise TypeError(f"expected uint8 frames, got {frames.dtype}")
    if not len(frames):
      return np.zeros(frames.shape[:3] + (3,), np.uint8)
    hint_batch = None
    if hints is not None:
      raster = self.rasterize(hints, *frames.shape[1:3])
      hint_batch = self.hint_batch([raster] * self.batch_size)
    results = []
    for start in range(0, len(frames), self.batch_size):
      prediction = self.predict(frames[start : start + self.batch_size], hint_batch)
      results.append(self.compose(prediction.lightness, prediction.ab))
    return np.concatenate([np.asarray(r) for r in results], axis=0)[: len(frames)]

  def colorize_images(
    self, images: list[np.ndarray], hints: list[Any] | None = None
  ) -> list[np.ndarray]:
    """Images of different sizes (uint8 [H,W,3] or [H,W]) -> colourised uint8 [H,W,3].

    hints: one entry per image, each None (no hints) or anything `hint_files.as_hints` takes
    (an RGBA scribble of the image's size, a point list, `hint_files.Hints`); only for a model
    trained with hints (else HintsError, as for hints of the wrong size). The generator runs on
    full batches of render-size inputs; only prepare and compose compile per image size.
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
      hint_batch = None
      if self.takes_hints:
        hint_batch = self.hint_batch(rasters[start : start + self.batch_size])
      ab = np.asarray(self.generate(x, hint_batch))
      for i, (lightness, _) in enumerate(group):
        outputs.append(np.asarray(self.compose(lightness, ab[i : i + 1]))[0])
    return outputs

  def _rasters(self, images: list[np.ndarray], given: list[Any] | None) -> list[Any]:
    """Each image's hints rasterised at the render size, or None."""
    if given is None:
      return [None] * len(images)
    if len(given) != len(images):
      raise ValueError(f"{len(given)} hint entries for {len(images)} images")
    return [
      None if g is None else self.rasterize(g, *np.shape(im)[:2])
      for im, g in zip(images, given, strict=True)
    ]


def _pop_shape(kwargs: dict[str, Any]) -> dict[str, Any]:
  """Takes the model-shape keywords (render_size, batch_size) out of a constructor's kwargs."""
  shape = {k: kwargs.pop(k, None) for k in ("render_size", "batch_size")}
  return {k: v for k, v in shape.items() if v is not None}


def _with_channels(frames: np.ndarray) -> np.ndarray:
  """[N,H,W] -> [N,H,W,1]; [N,H,W,4] (RGBA) -> [N,H,W,3]; others unchanged."""
  if frames.ndim == 3:
    return frames[..., None]
  if frames.ndim == 4 and frames.shape[-1] == 4:
    return frames[..., :3]
  if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
    raise ValueError(f"expected frames [N,H,W], [N,H,W,1] or [N,H,W,3], got {frames.shape}")
  return frames
