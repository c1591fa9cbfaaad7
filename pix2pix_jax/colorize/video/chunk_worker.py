"""One chunk of a chunked run: decode -> colourise -> encode its body at once, its head (smoothed
from the end of the chunk before it) last; no frame is decoded twice (docs/video.md)."""

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from pix2pix_jax import files
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import chunk_files, colourise, source, temporal, writer
from pix2pix_jax.colorize.video.chunk_plan import Chunk
from pix2pix_jax.colorize.video.settings import Settings


class Stopped(Exception):
  """The run was stopped (an error elsewhere, Ctrl-C or SIGTERM)."""


@dataclasses.dataclass
class Tail:
  """What the next chunk's head needs from a chunk's last frame."""

  state: temporal.SmoothState | None
  last_in: np.ndarray | None = None  # --consistency: the last source frame, small
  last_out: np.ndarray | None = None  # and the last output frame


class Tails:
  """Chunks' tails by index: one worker publishes, the next chunk's worker waits for it."""

  def __init__(self, stop: threading.Event):
    self._stop = stop
    self._tails: dict[int, Tail] = {}
    self._changed = threading.Condition()

  def put(self, index: int, tail: Tail) -> None:
    with self._changed:
      self._tails[index] = tail
      self._changed.notify_all()

  def get(self, index: int) -> Tail:
    """Waits for chunk `index`'s tail; Stopped where the run stops first."""
    with self._changed:
      while index not in self._tails:
        if self._stop.is_set():
          raise Stopped
        self._changed.wait(timeout=0.2)
      return self._tails[index]


@dataclasses.dataclass
class ChunkStats:
  cuts: int = 0
  consistency_in: tuple[float, int] = (0.0, 0)  # (sum, pairs)
  consistency_out: tuple[float, int] = (0.0, 0)


@dataclasses.dataclass
class Run:
  """What every chunk of one run shares."""

  stages: colourise.ClipColorizer  # with a dispatch lock
  clip: source.Source
  settings: Settings  # threads: each worker's decoder and encoder threads
  paths: list[dict[str, str]]  # each chunk's files by chunk_files kind
  tails: Tails
  stop: threading.Event
  on_frames: Callable[[int], None]
  in_progress: set[str]  # the temporary files being written, removed if the run stops


class _Segment:
  """An encoder writing one of a chunk's files under a temporary name, renamed when complete."""

  def __init__(self, path: str, width: int, height: int, run: Run):
    self.path, self.tmp = path, files.temp_name(path, "partial")
    self.done = False
    settings = run.settings
    self._writer = writer.FrameWriter(
      self.tmp, width, height, run.clip.fps, settings.encode, threads=settings.threads
    )

  def write(self, rgb: np.ndarray) -> None:
    self._writer.write(rgb)

  def close(self) -> None:
    self._writer.close()
    os.replace(self.tmp, self.path)
    self.done = True

  def abort(self) -> None:
    self._writer.abort()
    with contextlib.suppress(FileNotFoundError):
      os.remove(self.tmp)


class _Chunk:
  """One chunk's work: `body` (decode everything, encode the body, keep the head's
  predictions), then `head` (smoothed from the previous chunk's tail) and the state file."""

  def __init__(self, run: Run, chunk: Chunk):
    self.run, self.chunk = run, chunk
    self.compare, self.consistency = run.settings.compare, run.settings.consistency
    self.stats = ChunkStats()
    self.segments: list[_Segment] = []
    self.head: list[tuple[colorizer_lib.Prediction, np.ndarray | None]] = []
    self.body_segment: _Segment | None = None
    self.state = run.stages.initial_state()
    self.measure_in = temporal.Consistency() if self.consistency else None
    self.measure_out = temporal.Consistency() if self.consistency else None
    self.first_in = self.first_out = None  # --consistency: pairs across the chunk's joins

  def segment(self, kind: str, frames: np.ndarray) -> _Segment:
    """An encoder for the chunk's `kind` file, for frames shaped like `frames` [B,H,W,C]."""
    height, width = frames.shape[1:3]
    path = self.run.paths[self.chunk.index][kind]
    seg = _Segment(path, width * (2 if self.compare else 1), height, self.run)
    self.segments.append(seg)
    self.run.in_progress.add(seg.tmp)
    return seg

  def emit(
    self,
    seg: _Segment,
    out: Any,
    n: int,
    cuts: Any,
    frames: np.ndarray | None,
    measure: temporal.Consistency | None,
  ) -> None:
    """A batch's n frames to `seg` (and `measure`), its scene cuts counted."""
    rgb = np.asarray(out)[:n]
    if measure is not None:
      with self.run.stages.dispatch:  # jax work too
        measure.add(rgb)
    seg.write(rgb if not self.compare else colorizer_lib.side_by_side(frames, rgb))
    if cuts is not None:
      self.stats.cuts += int(np.asarray(cuts)[:n].sum())
    self.run.on_frames(n)

  def body(self) -> None:
    """Decodes the chunk; runs the generator over every frame, encodes the body as it goes."""
    run, chunk, stages = self.run, self.chunk, self.run.stages
    s = run.settings
    batch = stages.colorizer.batch_size
    frames_in = source.read_range(run.clip, chunk.start, chunk.end, batch, s.threads)
    position, pending = chunk.start, None
    for frames in source.in_background(frames_in, run.clip.path, s.timeout):
      if run.stop.is_set():
        raise Stopped
      if self.first_in is None:
        self.first_in = frames[:1]
      if self.measure_in is not None:
        with stages.dispatch:
          self.measure_in.add(frames)
      first, in_head = position, min(len(frames), max(0, chunk.body - position))
      position += len(frames)
      if in_head:
        prediction = stages.predict(frames[:in_head], first)
        self.state = stages.advance(prediction, self.state)
        self.head.append((prediction, frames[:in_head] if self.compare else None))
        frames, first = frames[in_head:], first + in_head
      if not len(frames):
        continue
      if self.body_segment is None:
        self.body_segment = self.segment(chunk_files.BODY, frames)
      out, self.state, cuts = stages(frames, first, self.state)
      if pending is not None:
        self.emit(self.body_segment, *pending, self.measure_out)
      # Read back one batch late, so that the next batch is queued before this one finishes.
      pending = (out, len(frames), cuts, frames if self.compare else None)
      if self.first_out is None and self.consistency:
        self.first_out = pending
    if pending is not None:
      self.emit(self.body_segment, *pending, self.measure_out)
    if position != chunk.end:
      raise source.CannotSplit(
        f"frames {chunk.start}-{chunk.end} decoded to {position - chunk.start} frames, "
        f"expected {chunk.frames}"
      )
    if self.body_segment is not None:
      self.body_segment.close()
      run.tails.put(chunk.index, Tail(self.state, _last(self.measure_in), _last(self.measure_out)))

  def finish_head(self) -> None:
    """The head, smoothed from the previous chunk's end, and the joins' consistency pairs."""
    run, chunk = self.run, self.chunk
    if not chunk.index or not (self.head or self.consistency):
      if self.consistency:
        self.stats.consistency_in = _sum(self.measure_in)
        self.stats.consistency_out = _sum(self.measure_out)
      return
    previous = run.tails.get(chunk.index - 1)
    join_out = temporal.Consistency(previous.last_out) if self.consistency else None
    if self.head:
      seg = self.segment(chunk_files.HEAD, self.head[0][0].lightness)
      state = previous.state
      for prediction, frames in self.head:
        out, state, cuts = run.stages.finish(prediction, state)
        self.emit(seg, out, prediction.count, cuts, frames, join_out)
      seg.close()
      if self.body_segment is None:
        self.state = state
        run.tails.put(chunk.index, Tail(state, _last(self.measure_in), _last(join_out)))
    if self.consistency:
      join_in = temporal.Consistency(previous.last_in)
      with run.stages.dispatch:
        join_in.add(self.first_in)
        if self.body_segment is not None:
          join_out.add(np.asarray(self.first_out[0])[:1])
      self.stats.consistency_in = _sum(self.measure_in, join_in)
      self.stats.consistency_out = _sum(self.measure_out, join_out)


def encode_chunk(run: Run, chunk: Chunk) -> ChunkStats:
  """Colourises `chunk` into its files; a chunk stopped or failed keeps none of them."""
  work = _Chunk(run, chunk)
  try:
    work.body()
    work.finish_head()
    chunk_files.save_state(run.paths[chunk.index][chunk_files.STATE], work.state)
  except BaseException:
    for seg in work.segments:
      if seg.done:
        with contextlib.suppress(FileNotFoundError):
          os.remove(seg.path)
      else:
        seg.abort()
    raise
  finally:
    for seg in work.segments:
      run.in_progress.discard(seg.tmp)
  return work.stats


def _last(measure: temporal.Consistency | None) -> np.ndarray | None:
  return None if measure is None else measure.last


def _sum(*measures: temporal.Consistency) -> tuple[float, int]:
  return sum(m.total for m in measures), sum(m.count for m in measures)
