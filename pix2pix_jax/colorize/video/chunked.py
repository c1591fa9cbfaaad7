"""A long clip in chunks: plan frame-exact ranges -> N workers (one thread each) run the stages
on them -> the finished chunks, kept for a resume, are joined by stream copy (docs/video.md)."""

import concurrent.futures
import contextlib
import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Callable

from pix2pix_jax import files
from pix2pix_jax import progress as progress_lib
from pix2pix_jax.colorize.video import (
  chunk_files,
  chunk_plan,
  chunk_worker,
  colourise,
  memory,
  probe,
  source,
  temporal,
  writer,
)
from pix2pix_jax.colorize.video.chunk_plan import Chunk
from pix2pix_jax.colorize.video.settings import Settings, VideoResult


def run(
  stages: colourise.ClipColorizer,
  src: str,
  dst: str,
  info: probe.VideoInfo,
  settings: Settings,
  *,
  workers: int,
  chunk_seconds: float | None,
  overwrite: bool,
  note: Callable[[str], None],
) -> VideoResult | None:
  """`src` colourised into `dst` over `workers` pipelines; None (nothing written) where it is
  one chunk long or cannot be split frame exactly: the caller runs it serially."""
  try:
    clip = source.open_source(src, info)
  except source.CannotSplit as e:
    note(f"{src}: colourising in one piece: {e}")
    return None
  seconds = chunk_seconds or chunk_plan.default_chunk_seconds(clip.total / float(clip.fps))
  chunk_frames = max(1, round(seconds * float(clip.fps)))
  if clip.total <= chunk_frames:
    return None
  codec = writer.resolve_codec(settings.encode, dst)  # the chunks' codec is the output's
  settings = dataclasses.replace(
    settings,
    encode=dataclasses.replace(settings.encode, codec=codec),
    threads=max(1, source.usable_cores() // max(1, workers)),
  )
  # One Colorizer, several threads: its calls are dispatched one at a time (colourise.py).
  stages = colourise.ClipColorizer(
    stages.colorizer, stages.smoothing, stages.hints, threading.Lock()
  )
  try:
    return _run(stages, clip, dst, settings, workers, chunk_frames, overwrite, note)
  except source.CannotSplit as e:
    note(f"{src}: cannot be split frame exactly ({e}); colourising in one piece")
    return None


@dataclasses.dataclass
class _Plan:
  chunks: list[Chunk]
  folder: str
  paths: list[dict[str, str]]
  finished: list[bool]

  @property
  def todo(self) -> list[Chunk]:
    return [c for c, done in zip(self.chunks, self.finished, strict=True) if not done]


def _plan(
  stages: colourise.ClipColorizer,
  clip: source.Source,
  dst: str,
  settings: Settings,
  chunk_frames: int,
) -> _Plan:
  """The chunks, their folder (tidied of other runs' files) and which are finished already."""
  head = temporal.head_frames(settings.smoothing.strength, stages.colorizer.batch_size)
  chunks = chunk_plan.plan_chunks(clip.total, chunk_frames, head)
  fp = chunk_files.fingerprint(
    stages.colorizer,
    clip,
    {  # the frame ranges are in the chunks' names; the threads change no pixel
      "encode": dataclasses.astuple(settings.encode),
      "smoothing": settings.smoothing.strength,
      "cuts": (temporal.CUT_MEASURE, settings.smoothing.cut_threshold),
      "compare": settings.compare,
      "head": head,
      "hints": None if stages.hints is None else stages.hints.digest,
    },
  )
  folder = chunk_files.chunk_folder(dst)
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise files.MediaError(f"{dst}: cannot create {folder} ({files.describe_os_error(e)})") from e
  chunk_files.tidy(folder, fp)
  paths = [
    {kind: chunk_files.chunk_path(folder, fp, c, kind) for kind in chunk_files.KINDS}
    for c in chunks
  ]
  finished = [chunk_files.is_finished(folder, fp, c) for c in chunks]
  return _Plan(chunks, folder, paths, finished)


def _run(
  stages: colourise.ClipColorizer,
  clip: source.Source,
  dst: str,
  settings: Settings,
  workers: int,
  chunk_frames: int,
  overwrite: bool,
  note: Callable[[str], None],
) -> VideoResult:
  started = time.perf_counter()
  memory.release_freed_memory()
  plan = _plan(stages, clip, dst, settings, chunk_frames)
  todo = plan.todo
  resumed = len(plan.chunks) - len(todo)
  workers = max(1, min(workers, len(todo) or 1))
  if resumed:
    note(f"{clip.path}: resumed {resumed} of {len(plan.chunks)} chunks from {plan.folder}")
  bar = progress_lib.Progress(
    os.path.basename(clip.path), clip.total, unit="frames", enabled=settings.progress
  )
  bar.update(clip.total - sum(c.frames for c in todo))
  stop = threading.Event()
  count_lock = threading.Lock()

  def on_frames(n: int) -> None:
    with count_lock:
      bar.update(n)

  shared = chunk_worker.Run(
    stages, clip, settings, plan.paths, chunk_worker.Tails(stop), stop, on_frames, set()
  )
  _resume_tails(plan, shared.tails)
  with bar:
    try:
      stats = _work(shared, todo, workers)
    except source.CannotSplit:
      shutil.rmtree(plan.folder, ignore_errors=True)
      raise
  with writer.output(dst, clip.path, clip.info, overwrite=overwrite) as out:
    chunk_files.join(_segments(plan), clip.fps, plan.folder, out.video)
  shutil.rmtree(plan.folder, ignore_errors=True)
  return _result(clip, dst, settings, stats, out.muxed, started, plan, resumed, workers)


def _resume_tails(plan: _Plan, tails: chunk_worker.Tails) -> None:
  """Finished chunks followed by an unfinished one publish their saved end state."""
  for c, finished in zip(plan.chunks, plan.finished, strict=True):
    if finished and c.index + 1 < len(plan.chunks) and not plan.finished[c.index + 1]:
      state = chunk_files.load_state(plan.paths[c.index][chunk_files.STATE])
      tails.put(c.index, chunk_worker.Tail(state))


def _work(
  shared: chunk_worker.Run, todo: list[Chunk], workers: int
) -> list[chunk_worker.ChunkStats]:
  """The chunks over `workers` threads, in order; the first error stops the others and is
  raised. Ctrl-C / SIGTERM stop them too: files in progress are removed, finished chunks kept."""
  stop = shared.stop

  def task(chunk: Chunk) -> chunk_worker.ChunkStats | None:
    if stop.is_set():
      return None
    try:
      return chunk_worker.encode_chunk(shared, chunk)
    except chunk_worker.Stopped:
      return None
    except BaseException:
      stop.set()
      raise

  pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="chunk worker")
  futures = [pool.submit(task, c) for c in todo]
  try:
    pending: set = set(futures)
    while pending:  # short waits, so that Ctrl-C reaches this thread
      _, pending = concurrent.futures.wait(pending, timeout=0.2)
  except BaseException:
    stop.set()
    pool.shutdown(wait=False, cancel_futures=True)
    concurrent.futures.wait(futures, timeout=30.0)
    for tmp in list(shared.in_progress):  # also those of workers still busy (a slow encoder)
      with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
    raise
  pool.shutdown()
  for future in futures:
    if future.exception() is not None:
      raise future.exception()
  return [stats for stats in (f.result() for f in futures) if stats is not None]


def _segments(plan: _Plan) -> list[tuple[str, int]]:
  """Every chunk's head and body files, in order, with their frame counts."""
  return [
    (p[kind], frames)
    for c, p in zip(plan.chunks, plan.paths, strict=True)
    for kind, frames in ((chunk_files.HEAD, c.body - c.start), (chunk_files.BODY, c.end - c.body))
    if frames
  ]


def _result(
  clip: source.Source,
  dst: str,
  settings: Settings,
  stats: list[chunk_worker.ChunkStats],
  muxed: writer.Muxed,
  started: float,
  plan: _Plan,
  resumed: int,
  workers: int,
) -> VideoResult:
  result = VideoResult(
    src=clip.path,
    dst=dst,
    frames=clip.total,
    width=clip.info.width * (2 if settings.compare else 1),
    height=clip.info.height,
    fps=float(clip.fps),
    seconds=time.perf_counter() - started,
    audio=muxed.audio,
    subtitles=muxed.subtitles,
    scene_cuts=max(sum(s.cuts for s in stats) - 1, 0) if not resumed else 0,
    decoder=clip.backend,
    chunks=len(plan.chunks),
    resumed=resumed,
    workers=workers,
  )
  if settings.consistency and not resumed:
    for name in ("consistency_in", "consistency_out"):
      total = sum(getattr(s, name)[0] for s in stats)
      count = sum(getattr(s, name)[1] for s in stats)
      setattr(result, name, total / count if count else None)
  return result
