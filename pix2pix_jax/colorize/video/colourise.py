"""The colourise and temporal stages of one clip: a Colorizer with the clip's hints and
smoothing, batch by batch (predict, then smooth and compose)."""

import contextlib
import hashlib
import threading
from typing import Any

import jax
import numpy as np

from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import hint_track, temporal
from pix2pix_jax.hints import raster as hint_raster


class ClipHints:
  """A clip's hints, frame by frame: the generator's hint channels for a batch of frames, and a
  digest of what they come from (a chunked run's resume fingerprint)."""

  def __init__(
    self,
    colorizer: colorizer_lib.Colorizer,
    digest: str,
    *,
    fixed: np.ndarray | None = None,
    track: hint_track.ClipTrack | None = None,
  ):
    """fixed: one raster for every frame; track: each frame's hints from a first pass."""
    self.colorizer, self.digest, self.track = colorizer, digest, track
    self._fixed = None if fixed is None else colorizer.hint_batch([fixed] * colorizer.batch_size)

  @classmethod
  def fixed(
    cls, colorizer: colorizer_lib.Colorizer, value: Any, height: int, width: int, **names: str
  ) -> "ClipHints":
    """The same hints on every frame: `value` is anything `hint_files.as_hints` takes, for
    height x width frames; names: for error messages (source=, photo=)."""
    raster = colorizer.rasterize(value, height, width, **names)
    return cls(colorizer, hashlib.sha256(raster.tobytes()).hexdigest(), fixed=raster)

  def batch(self, first: int, count: int) -> jax.Array:
    """Hint channels [batch_size, r, r, 3] for the `count` frames from `first` (whole-clip
    frame indices)."""
    if self._fixed is not None:
      return self._fixed
    rasters = []
    for t in range(first, first + count):
      found = self.track.points(t)
      if found is not None:
        found = hint_raster.rasterize_points(
          *found, self.track.frame_size, self.colorizer.render_size
        )
      rasters.append(found)
    return self.colorizer.hint_batch(rasters)


class ClipColorizer:
  """The stages between decoding and encoding, for one pipeline (one thread).

  Chunked runs share one Colorizer over several threads: `dispatch` orders their jax calls
  (over several devices each call also finishes before the lock is let go: a batch's smoothing
  gathers the sharded batch, and XLA's rendezvous deadlocked with other threads' programs
  running at once).
  """

  def __init__(
    self,
    colorizer: colorizer_lib.Colorizer,
    smoothing: temporal.Smoothing,
    hints: ClipHints | None = None,
    dispatch: "threading.Lock | None" = None,
  ):
    self.colorizer, self.smoothing, self.hints = colorizer, smoothing, hints
    self.dispatch = dispatch or contextlib.nullcontext()
    self._block = dispatch is not None and colorizer.mesh.size > 1

  def initial_state(self) -> temporal.SmoothState | None:
    """A fresh smoothing state (None where smoothing is off)."""
    if not self.smoothing.on:
      return None
    return temporal.initial_state(self.colorizer.render_size)

  def _locked(self, fn: Any, *args: Any) -> Any:
    with self.dispatch:
      result = fn(*args)
      if self._block:
        jax.block_until_ready(result)
    return result

  def predict(self, frames: np.ndarray, first: int) -> colorizer_lib.Prediction:
    """The generator's output for up to batch_size frames, the first of them frame `first` of
    the clip, with their hints."""
    hint_batch = None if self.hints is None else self.hints.batch(first, len(frames))
    return self._locked(self.colorizer.predict, frames, hint_batch)

  def advance(
    self, prediction: colorizer_lib.Prediction, state: temporal.SmoothState | None
  ) -> temporal.SmoothState | None:
    """The smoothing state after `prediction`'s frames (nothing composed)."""
    if state is None:
      return None
    return self._locked(self._smooth, prediction, state)[1]

  def finish(
    self, prediction: colorizer_lib.Prediction, state: temporal.SmoothState | None
  ) -> tuple[jax.Array, temporal.SmoothState | None, jax.Array | None]:
    """(uint8 [batch_size,H,W,3] on the device, padded; the state after the frames; per-frame
    cut flags or None): `prediction` smoothed from `state` (where given) and composed."""
    return self._locked(self._finish, prediction, state)

  def __call__(
    self, frames: np.ndarray, first: int, state: temporal.SmoothState | None
  ) -> tuple[jax.Array, temporal.SmoothState | None, jax.Array | None]:
    """`finish(predict(frames, first), state)`; does not block."""
    return self.finish(self.predict(frames, first), state)

  def _smooth(self, prediction: colorizer_lib.Prediction, state: temporal.SmoothState) -> Any:
    return temporal.smooth(
      prediction.ab, prediction.x, prediction.count, state, self.smoothing, self.colorizer.mesh
    )

  def _finish(self, prediction: colorizer_lib.Prediction, state: Any) -> Any:
    ab, cuts = prediction.ab, None
    if state is not None:
      ab, state, cuts = self._smooth(prediction, state)
    return self.colorizer.compose(prediction.lightness, ab), state, cuts
