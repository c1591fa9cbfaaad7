"""Colourising a video: reader thread -> colorizer.Colorizer -> writer thread -> audio remux.

The main thread dispatches chunk k to the device while chunk k+1 decodes and chunk k-1 is
written, so at most a few chunks are alive at once and memory does not grow with the clip.

Output: the source's frame count, width, height and audio, at the source's average frame rate,
constant. A variable-rate source keeps its frames and duration, so audio stays in sync at both
ends; single frames may move by up to the source's jitter. Subtitles, chapters and the
container's tags are kept too (writer.mux).

A window (`window=(start, duration)` seconds, --start/--duration): exactly the source's frames
with timestamps in [start, start + duration) (read from the ffmpeg pipe: an accurate seek, then
a trim; see reader.py), and audio, subtitles and chapters cut to the same span (writer.mux).
The output's first frame is at time 0, and the audio starts at `start`: where `start` falls
between two frames they are out of step by less than one frame. Smoothing starts afresh at the
window's first frame, so with smoothing on, a preview's first frames may differ from the same
frames of a run over the whole clip until the EMA settles (`--smoothing 0` gives the same
frames).

Temporal smoothing (default 0.7): an EMA of the predicted chroma, reset at scene cuts (see
colorizer.py). A chroma change settles with a time constant of 1 / (1 - s) frames, so strength
trades steadiness for lag.
"""

import dataclasses
import fractions
import os
import re
import time
from typing import Any

import numpy as np

from pix2pix_jax import files, metrics
from pix2pix_jax import progress as progress_lib
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import memory, probe, reader, writer

DEFAULT_SMOOTHING = 0.7  # chosen by measurement: most of the steadiness, little lag


@dataclasses.dataclass
class VideoResult:
  """What `colorize_video` did; `summary()` is the per-input line."""

  src: str
  dst: str
  frames: int
  width: int
  height: int
  fps: float
  seconds: float
  audio: str  # "none" | "copied" | "re-encoded (codec)"
  scene_cuts: int = 0
  subtitles: str = "none"  # "none" | "copied" | "converted (codec)" | "dropped (why)"
  decoder: str = "decord"
  consistency_in: float | None = None  # mean temporal consistency of the source frames
  consistency_out: float | None = None  # ... and of the colourised frames

  def summary(self) -> str:
    text = (
      f"{self.src} -> {self.dst}: {self.frames} frames {self.width}x{self.height} "
      f"@ {self.fps:.3f} fps, audio {self.audio}, "
      + (f"subtitles {self.subtitles}, " if self.subtitles != "none" else "")
      + f"{self.frames / max(self.seconds, 1e-9):.1f} frames/s"
    )
    if self.consistency_out is not None:
      text += (
        f", temporal consistency {self.consistency_out:.4f} (source {self.consistency_in:.4f})"
      )
    return text


def _small(frames: np.ndarray, max_side: int = 96) -> np.ndarray:
  """Strided downsampling for the consistency figure (colour distributions barely change)."""
  step = max(1, int(np.ceil(max(frames.shape[1:3]) / max_side)))
  return frames[:, ::step, ::step]


class Consistency:
  """Running mean of metrics.temporal_consistency over a stream of chunks."""

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


def colorize_video(
  colorizer: colorizer_lib.Colorizer,
  src: str,
  dst: str,
  *,
  overwrite: bool = False,
  encode: writer.EncodeOptions | None = None,
  smoothing: float = DEFAULT_SMOOTHING,
  cut_threshold: float = colorizer_lib.DEFAULT_CUT_THRESHOLD,
  consistency: bool = False,
  compare: bool = False,
  progress: bool = True,
  timeout: float = reader.DEFAULT_CHUNK_TIMEOUT,
  reopen_every: int = reader.DEFAULT_REOPEN_EVERY,
  window: tuple[float, float] | None = None,
  threads: int | None = None,
) -> VideoResult:
  """Colourises `src` into `dst` (written atomically); see the module docstring.

  smoothing: 0 (off) .. <1, the weight of the previous frame's chroma in the moving average.
  consistency: also measure the temporal consistency of the source and output frames.
  compare: write the source frame and its colourised frame side by side (width 2W, see
    `colorizer.side_by_side`); frame count, rate and audio are kept as usual.
  window: (start, duration) seconds: only the frames in [start, start + duration).
  threads: decoder threads (None: reader.decode_threads()).
  """
  encode = encode or writer.EncodeOptions()
  start = time.perf_counter()
  memory.release_freed_memory()
  info = probe.probe(src)
  writer.resolve_codec(encode, dst)  # fail early on an impossible codec/container pair
  if window is not None:
    check_window(src, info, window)
    backend, decord_reader = "ffmpeg", None
  else:
    backend, decord_reader = reader.choose_backend(src, info, threads=threads)
  if decord_reader is not None:
    total, fps = len(decord_reader), reader.average_fps(decord_reader)
    # iter_chunks takes the only reference, so that a re-open frees the old reader.
    decord_reader = [decord_reader]
  else:
    fps = fractions.Fraction(info.fps or 25.0).limit_denominator(1001)
    seconds = info.duration or 0.0
    if window is not None:
      seconds = min(window[1], seconds - window[0]) if info.duration else 0.0
    total = int(round(seconds * float(fps)))
  state = colorizer.initial_state() if smoothing > 0 else None
  bar = progress_lib.Progress(os.path.basename(src), total, unit="frames", enabled=progress)
  measure_in = Consistency() if consistency else None
  measure_out = Consistency() if consistency else None
  frames_done, cuts, width, height = 0, 0, info.width, info.height
  muxed = writer.Muxed("none", "none")
  with files.atomic_output(dst, overwrite=overwrite) as tmp:
    # Named only: the encoder creates it inside the try below, which removes it on any error.
    video_tmp = files.temp_name(dst, "video") if info.needs_remux else tmp
    encoder = None
    try:
      pending = None
      chunks = reader.iter_chunks(
        src,
        colorizer.batch_size,
        timeout=timeout,
        reopen_every=reopen_every,
        reader=decord_reader.pop() if decord_reader else None,
        backend=backend,
        info=info,
        window=window,
        threads=threads,
      )
      for k, frames in enumerate(chunks):
        if encoder is None:
          height, width = frames.shape[1:3]
          width *= 2 if compare else 1
          encoder = writer.FrameWriter(video_tmp, width, height, fps, encode)
        out, state, cut_flags = colorizer.colorize_batch(
          frames, state=state, strength=smoothing, cut_threshold=cut_threshold
        )
        if measure_in is not None:
          measure_in.add(frames)
        if pending is not None:
          frames_done, cuts = _flush(pending, encoder, measure_out, bar, frames_done, cuts)
        # Read back one batch late, so that the next batch is queued before this one finishes.
        pending = (out, len(frames), cut_flags, frames if compare else None)
        if k % 16 == 15:
          memory.release_freed_memory()
      if pending is not None:
        frames_done, cuts = _flush(pending, encoder, measure_out, bar, frames_done, cuts)
      if encoder is None:
        raise files.MediaError(f"{src}: video has no frames")
      encoder.close()
      encoder = None
      if video_tmp != tmp:
        muxed = writer.mux(video_tmp, src, tmp, info=info, window=window)
    except BaseException:
      if encoder is not None:
        encoder.abort()
      raise
    finally:
      bar.close()
      if video_tmp != tmp and os.path.exists(video_tmp):
        os.remove(video_tmp)
  return VideoResult(
    src=src,
    dst=dst,
    frames=frames_done,
    width=width,
    height=height,
    fps=float(fps),
    seconds=time.perf_counter() - start,
    audio=muxed.audio,
    subtitles=muxed.subtitles,
    scene_cuts=max(cuts - 1, 0),  # the clip's first frame "starts a shot"; it is not a cut
    decoder=backend,
    consistency_in=measure_in.mean if measure_in else None,
    consistency_out=measure_out.mean if measure_out else None,
  )


def parse_seconds(text: str) -> float:
  """Seconds from "90", "1.5", "01:30" or "1:02:03.250" ([[HH:]MM:]SS[.fraction]); ValueError
  for anything else or a negative time."""
  parts = text.strip().split(":")
  if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"\d+(\.\d*)?|\.\d+", p) for p in parts):
    raise ValueError(f"{text!r} is not a time (seconds, or HH:MM:SS[.ms])")
  if any("." in p for p in parts[:-1]) or any(float(p) >= 60 for p in parts[1:]):
    raise ValueError(f"{text!r} is not a time (seconds, or HH:MM:SS[.ms])")
  seconds = 0.0
  for part in parts:
    seconds = seconds * 60 + float(part)
  return seconds


def check_window(src: str, info: probe.VideoInfo, window: tuple[float, float]) -> None:
  """MediaError where a window (start, duration) cannot hold a frame of `src`."""
  start, duration = window
  if start < 0 or duration <= 0:
    raise ValueError(f"window {window}: start must be >= 0 and duration > 0")
  if info.duration is not None and start >= info.duration:
    raise files.MediaError(
      f"{src}: the window starts at {start:g} s, past the end of the clip ({info.duration:g} s)"
    )


def _flush(
  pending: tuple[Any, int, Any, np.ndarray | None],
  encoder: writer.FrameWriter,
  measure: Consistency | None,
  bar: progress_lib.Progress,
  frames_done: int,
  cuts: int,
) -> tuple[int, int]:
  """Writes a colourised batch; returns the frame and scene-cut counts with it added."""
  out, n, cut_flags, source = pending
  frames = np.asarray(out)[:n]
  encoder.write(frames if source is None else colorizer_lib.side_by_side(source, frames))
  if measure is not None:
    measure.add(frames)
  bar.update(n)
  if cut_flags is not None:
    cuts += int(np.asarray(cut_flags)[:n].sum())
  return frames_done + n, cuts
