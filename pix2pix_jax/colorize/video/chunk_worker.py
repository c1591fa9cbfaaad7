"""One chunk of a chunked run: decode -> colourise -> encode, its head last.

A chunk runs the generator over its frames in order, smoothing from a fresh state, and composes
and encodes its body at once. Its head's predictions (the full-size lightness and the
render-size chroma, on the device) wait until the chunk before it publishes its end state
(`Tails`); then they are smoothed from that state, as the serial run smooths them, composed and
encoded as the chunk's first segment. No frame is decoded or run through the generator twice;
the head's frames are the serial run's and the body's within 1/1024 of the chroma range of them
(chunk_plan.py). The worker waits for the previous chunk's end only after its own body, so a
wait is short: that chunk was taken earlier and has no longer to run.
"""

import contextlib
import dataclasses
import os
import threading
from typing import Any

import jax
import numpy as np

from pix2pix_jax import files
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import chunk_files, chunk_plan, pipeline, reader, writer
from pix2pix_jax.colorize.video.chunk_plan import Chunk, Source


class Stopped(Exception):
  """The run was stopped (an error elsewhere, Ctrl-C or SIGTERM)."""


@dataclasses.dataclass
class Tail:
  """What the next chunk's head needs from a chunk's last frame."""

  state: colorizer_lib.SmoothState | None
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


@dataclasses.dataclass(frozen=True)
class Settings:
  """A chunked run's settings, the same for every chunk."""

  encode: writer.EncodeOptions
  smoothing: float
  cut_threshold: float
  compare: bool
  consistency: bool
  timeout: float
  threads: int  # decoder and encoder threads of each worker


@dataclasses.dataclass
class ChunkStats:
  cuts: int = 0
  consistency_in: tuple[float, int] = (0.0, 0)  # (sum, pairs)
  consistency_out: tuple[float, int] = (0.0, 0)


class _Segment:
  """An encoder writing one of a chunk's files under a temporary name, renamed when complete."""

  def __init__(self, path: str, width: int, height: int, source: Source, settings: Settings):
    self.path, self.tmp = path, files.temp_name(path, "partial")
    self.done = False
    self._writer = writer.FrameWriter(
      self.tmp, width, height, source.fps, settings.encode, threads=settings.threads
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


def encode_chunk(
  colorizer: colorizer_lib.Colorizer,
  source: Source,
  chunk: Chunk,
  paths: dict[str, str],
  settings: Settings,
  *,
  tails: Tails,
  stop: threading.Event,
  on_frames: Any,
  dispatch: threading.Lock,
  in_progress: set[str],
) -> ChunkStats:
  """Colourises `chunk` into its files (`paths` by chunk_files kind); see the module docstring.
  Registers its temporary files in `in_progress` while it writes them."""
  s = settings
  read = chunk_plan.read_range(source, chunk.start, chunk.end, colorizer.batch_size, s.threads)
  items = reader.in_background(read, source.path, s.timeout)
  smoothing = dict(strength=s.smoothing, cut_threshold=s.cut_threshold)
  state = colorizer.initial_state() if s.smoothing > 0 else None
  stats = ChunkStats()
  measure_in = pipeline.Consistency() if s.consistency else None
  measure_out = pipeline.Consistency() if s.consistency else None
  several_devices = colorizer.mesh.size > 1
  head: list[tuple[colorizer_lib.Prediction, np.ndarray | None]] = []
  segments: list[_Segment] = []
  first_in = first_out = None  # --consistency: pairs across the chunk's joins
  position = chunk.start

  def locked(method: Any, *args: Any, **kwargs: Any) -> Any:
    """A Colorizer method holding the dispatch lock (see chunks._run_chunked)."""
    with dispatch:
      result = method(*args, **kwargs)
      if several_devices:
        jax.block_until_ready(result)
    return result

  def segment(kind: str, frames: Any) -> _Segment:
    """An encoder for the chunk's `kind` file, for frames shaped like `frames` [B,H,W,C]."""
    height, width = frames.shape[1:3]
    seg = _Segment(paths[kind], width * (2 if s.compare else 1), height, source, s)
    segments.append(seg)
    in_progress.add(seg.tmp)
    return seg

  def emit(seg: _Segment, out: Any, n: int, cuts: Any, frames: Any, measure: Any) -> None:
    """A batch's n frames to `seg` (and `measure`), its scene cuts counted."""
    rgb = np.asarray(out)[:n]
    if measure is not None:
      with dispatch:  # jax work too
        measure.add(rgb)
    seg.write(rgb if not s.compare else colorizer_lib.side_by_side(frames, rgb))
    if cuts is not None:
      stats.cuts += int(np.asarray(cuts)[:n].sum())
    on_frames(n)

  try:
    body, pending = None, None
    for frames in items:
      if stop.is_set():
        raise Stopped
      if first_in is None:
        first_in = frames[:1]
      if measure_in is not None:
        with dispatch:
          measure_in.add(frames)
      in_head = min(len(frames), max(0, chunk.body - position))
      position += len(frames)
      if in_head:
        prediction = locked(colorizer.predict, frames[:in_head])
        if state is not None:
          state = locked(colorizer.smooth, prediction, state, **smoothing)[1]
        head.append((prediction, frames[:in_head] if s.compare else None))
        frames = frames[in_head:]
      if not len(frames):
        continue
      if body is None:
        body = segment(chunk_files.BODY, frames)
      out, state, cuts = locked(colorizer.colorize_batch, frames, state=state, **smoothing)
      if pending is not None:
        emit(body, *pending, measure_out)
      # Read back one batch late, so that the next batch is queued before this one finishes.
      pending = (out, len(frames), cuts, frames if s.compare else None)
      if first_out is None and s.consistency:
        first_out = pending
    if pending is not None:
      emit(body, *pending, measure_out)
    if position != chunk.end:
      raise chunk_plan.CannotSplit(
        f"frames {chunk.start}-{chunk.end} decoded to {position - chunk.start} frames, "
        f"expected {chunk.frames}"
      )
    if body is not None:
      body.close()
      tails.put(chunk.index, Tail(state, _last(measure_in), _last(measure_out)))
    if chunk.index and (head or s.consistency):
      previous = tails.get(chunk.index - 1)
      join_out = pipeline.Consistency(previous.last_out) if s.consistency else None
      if head:
        seg = segment(chunk_files.HEAD, head[0][0].lightness)
        head_state = previous.state
        for prediction, frames in head:
          out, head_state, cuts = locked(colorizer.finish, prediction, head_state, **smoothing)
          emit(seg, out, prediction.count, cuts, frames, join_out)
        seg.close()
        if body is None:
          state = head_state
          tails.put(chunk.index, Tail(state, _last(measure_in), _last(join_out)))
      if s.consistency:
        join_in = pipeline.Consistency(previous.last_in)
        with dispatch:
          join_in.add(first_in)
          if body is not None:
            join_out.add(np.asarray(first_out[0])[:1])
        stats.consistency_in = _sum(measure_in, join_in)
        stats.consistency_out = _sum(measure_out, join_out)
    elif s.consistency:
      stats.consistency_in, stats.consistency_out = _sum(measure_in), _sum(measure_out)
    chunk_files.save_state(paths[chunk_files.STATE], state)
  except BaseException:  # the chunk is not finished: none of its files is kept
    for seg in segments:
      if seg.done:
        with contextlib.suppress(FileNotFoundError):
          os.remove(seg.path)
      else:
        seg.abort()
    raise
  finally:
    for seg in segments:
      in_progress.discard(seg.tmp)
  return stats


def _last(measure: pipeline.Consistency | None) -> np.ndarray | None:
  return None if measure is None else measure.last


def _sum(*measures: pipeline.Consistency) -> tuple[float, int]:
  return sum(m.total for m in measures), sum(m.count for m in measures)
