"""A clip in one pipeline: source -> colourise -> temporal -> writer, batch by batch.

The main thread dispatches batch k to the device while batch k+1 decodes and batch k-1 is
encoded, so memory does not grow with the clip (frame rate, windows, smoothing: docs/video.md).
"""

import fractions
import os
import time

import numpy as np

from pix2pix_jax import files
from pix2pix_jax import progress as progress_lib
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import (
  colourise,
  hint_track,
  memory,
  probe,
  source,
  temporal,
  writer,
)
from pix2pix_jax.colorize.video.settings import Settings, VideoResult


def run(
  stages: colourise.ClipColorizer,
  src: str,
  dst: str,
  info: probe.VideoInfo,
  settings: Settings,
  *,
  overwrite: bool = False,
  window: tuple[float, float] | None = None,
  reopen_every: int = source.DEFAULT_REOPEN_EVERY,
) -> VideoResult:
  """Colourises `src` (or the frames of `window`, (start, duration) seconds) into `dst`."""
  started = time.perf_counter()
  memory.release_freed_memory()
  batches, backend, total, fps = _open(stages, src, info, settings, window, reopen_every)
  # The clip's index of the first frame (keyframe hints count frames from the clip's start).
  first = 0 if window is None else hint_track.first_frame(window, info)
  bar = progress_lib.Progress(
    os.path.basename(src), total, unit="frames", enabled=settings.progress
  )
  counts = _Counts(settings.consistency)
  with bar, writer.output(dst, src, info, overwrite=overwrite, window=window) as out:
    size = _encode(stages, batches, first, out.video, fps, settings, counts, bar)
    if size is None:
      raise files.MediaError(f"{src}: video has no frames")
  height, width = size
  return VideoResult(
    src=src,
    dst=dst,
    frames=counts.frames,
    width=width,
    height=height,
    fps=float(fps),
    seconds=time.perf_counter() - started,
    audio=out.muxed.audio,
    subtitles=out.muxed.subtitles,
    scene_cuts=max(counts.cuts - 1, 0),  # the clip's first frame "starts a shot"; not a cut
    decoder=backend,
    consistency_in=counts.source.mean if counts.source else None,
    consistency_out=counts.output.mean if counts.output else None,
  )


def _open(
  stages: colourise.ClipColorizer,
  src: str,
  info: probe.VideoInfo,
  settings: Settings,
  window: tuple[float, float] | None,
  reopen_every: int,
) -> tuple[object, str, int, fractions.Fraction]:
  """(the clip's batches, the decoder backend, the expected frame count, the frame rate)."""
  backend, reader = "ffmpeg", None
  if window is None:
    backend, reader = source.choose_backend(src, info, threads=settings.threads)
  fps = source.frame_rate(info, reader)
  if reader is not None:
    total = len(reader)
  else:
    seconds = info.duration or 0.0
    if window is not None:
      seconds = min(window[1], seconds - window[0]) if info.duration else 0.0
    total = int(round(seconds * float(fps)))
  batches = source.iter_chunks(
    src,
    stages.colorizer.batch_size,
    timeout=settings.timeout,
    reopen_every=reopen_every,
    reader=reader,
    backend=backend,
    info=info,
    window=window,
    threads=settings.threads,
  )
  return batches, backend, total, fps


class _Counts:
  """Frames written, scene-cut flags seen and the consistency figures, as batches go by."""

  def __init__(self, consistency: bool):
    self.frames, self.cuts = 0, 0
    self.source = temporal.Consistency() if consistency else None
    self.output = temporal.Consistency() if consistency else None


def _encode(
  stages: colourise.ClipColorizer,
  batches: object,
  first: int,
  path: str,
  fps: fractions.Fraction,
  settings: Settings,
  counts: _Counts,
  bar: progress_lib.Progress,
) -> tuple[int, int] | None:
  """Every batch (the first of them frame `first` of the clip) colourised and encoded into
  `path`; the output's (height, width), None for a clip without frames."""
  encoder, pending, state = None, None, stages.initial_state()
  try:
    for k, frames in enumerate(batches):
      if encoder is None:
        height, width = frames.shape[1:3]
        width *= 2 if settings.compare else 1
        encoder = writer.FrameWriter(path, width, height, fps, settings.encode)
      out, state, cuts = stages(frames, first, state)
      first += len(frames)
      if counts.source is not None:
        counts.source.add(frames)
      if pending is not None:
        _write(encoder, *pending, counts, bar)
      # Read back one batch late, so that the next batch is queued before this one finishes.
      pending = (out, len(frames), cuts, frames if settings.compare else None)
      if k % 16 == 15:
        memory.release_freed_memory()
    if pending is not None:
      _write(encoder, *pending, counts, bar)
    if encoder is None:
      return None
    encoder.close()
  except BaseException:
    if encoder is not None:
      encoder.abort()
    raise
  return height, width


def _write(
  encoder: writer.FrameWriter,
  out: object,
  n: int,
  cuts: object,
  source_frames: np.ndarray | None,
  counts: _Counts,
  bar: progress_lib.Progress,
) -> None:
  """A colourised batch's n frames to the encoder, counted."""
  frames = np.asarray(out)[:n]
  if source_frames is not None:
    encoder.write(colorizer_lib.side_by_side(source_frames, frames))
  else:
    encoder.write(frames)
  if counts.output is not None:
    counts.output.add(frames)
  bar.update(n)
  if cuts is not None:
    counts.cuts += int(np.asarray(cuts)[:n].sum())
  counts.frames += n
