"""Long clips in chunks: N decode -> colourise -> encode pipelines at once, joined, resumable.

  pix2pix-colorize --workdir runs/x film.mkv -o out.mkv --workers 4 --chunk-seconds 60

The clip's frames are cut into chunks (chunk_plan.py: the split, the default --workers and
chunk length); N threads of one process share one Colorizer, each colourising the next chunk not
yet done (chunk_worker.py: a chunk's body at once, its head once the chunk before it is done, so
smoothing runs on across the joins); decord, the ffmpeg pipes and XLA release the GIL. Each
worker's decoder and encoder get cores // N threads. The jax calls take a lock (see
`_run_chunked`): they are asynchronous over one device, so the lock only orders their dispatch;
over several devices each batch finishes before the next starts. The chunks' segments are
joined by stream copy (ffmpeg's concat demuxer) and the source's audio is added once, as the
serial path does (`writer.mux_audio`). A lossless codec (--codec ffv1 --pix-fmt gbrp) gives a
serial run's frames; a lossy one differs by the encoder's restart at each join.

Resume (chunk_files.py): finished chunks stay in `.NAME.chunks/` beside the output, and the same
command run again reuses them ("resumed R of M chunks"). Ctrl-C / SIGTERM stop the workers,
remove the files in progress and keep the finished chunks. Clips that cannot be split frame
exactly, or whose chunk decodes to another frame count than planned, are colourised serially
(reported; nothing is half-written).
"""

import contextlib
import dataclasses
import os
import queue
import shutil
import threading
import time
from typing import Any

from pix2pix_jax import files
from pix2pix_jax import progress as progress_lib
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import (
  chunk_files,
  chunk_plan,
  chunk_worker,
  memory,
  pipeline,
  probe,
  reader,
  writer,
)
from pix2pix_jax.colorize.video.chunk_plan import CannotSplit, Source


@dataclasses.dataclass
class ChunkedResult(pipeline.VideoResult):
  chunks: int = 1
  resumed: int = 0
  workers: int = 1

  def summary(self) -> str:
    text = super().summary()
    if self.chunks > 1:
      text += (
        f", {self.chunks} chunks on {self.workers} worker{'s' if self.workers > 1 else ''} "
        f"(resumed {self.resumed} of {self.chunks} chunks)"
      )
    return text


def colorize_video(
  colorizer: colorizer_lib.Colorizer,
  src: str,
  dst: str,
  *,
  workers: int | None = None,
  chunk_seconds: float | None = None,
  overwrite: bool = False,
  encode: writer.EncodeOptions | None = None,
  smoothing: float = pipeline.DEFAULT_SMOOTHING,
  cut_threshold: float = colorizer_lib.DEFAULT_CUT_THRESHOLD,
  consistency: bool = False,
  compare: bool = False,
  progress: bool = True,
  timeout: float = reader.DEFAULT_CHUNK_TIMEOUT,
  note: Any = None,
) -> pipeline.VideoResult:
  """`pipeline.colorize_video` in chunks over `workers` pipelines (see the module docstring).

  workers None: `default_workers`; chunk_seconds None: `default_chunk_seconds`. Serial (today's
  path) for workers 1 without chunk_seconds, a clip no longer than one chunk, and clips that
  cannot be split frame exactly. note: called with a line to report (default: print).
  """
  encode = encode or writer.EncodeOptions()
  note = note or (lambda line: print(line, flush=True))
  serial = dict(
    overwrite=overwrite,
    encode=encode,
    smoothing=smoothing,
    cut_threshold=cut_threshold,
    consistency=consistency,
    compare=compare,
    progress=progress,
    timeout=timeout,
  )
  info = probe.probe(src)
  if workers is None:
    workers = chunk_plan.default_workers(info.width, info.height, colorizer.batch_size)
  if workers <= 1 and chunk_seconds is None:
    return pipeline.colorize_video(colorizer, src, dst, **serial)
  files.check_output(dst, overwrite=overwrite)
  codec = writer.resolve_codec(encode, dst)  # the chunks' codec is the output's
  try:
    source = chunk_plan.open_source(src, info)
  except CannotSplit as e:
    note(f"{src}: colourising in one piece: {e}")
    return pipeline.colorize_video(colorizer, src, dst, **serial)
  seconds = chunk_seconds or chunk_plan.default_chunk_seconds(source.total / float(source.fps))
  chunk_frames = max(1, round(seconds * float(source.fps)))
  if source.total <= chunk_frames:
    return pipeline.colorize_video(colorizer, src, dst, **serial)
  settings = chunk_worker.Settings(
    encode=dataclasses.replace(encode, codec=codec),
    smoothing=smoothing,
    cut_threshold=cut_threshold,
    compare=compare,
    consistency=consistency,
    timeout=timeout,
    threads=max(1, reader.usable_cores() // max(1, workers)),
  )
  try:
    return _run_chunked(
      colorizer,
      source,
      dst,
      settings,
      workers=workers,
      chunk_frames=chunk_frames,
      progress=progress,
      overwrite=overwrite,
      note=note,
    )
  except CannotSplit as e:
    note(f"{src}: cannot be split frame exactly ({e}); colourising in one piece")
    return pipeline.colorize_video(colorizer, src, dst, **serial)


def _run_chunked(
  colorizer: colorizer_lib.Colorizer,
  source: Source,
  dst: str,
  settings: chunk_worker.Settings,
  *,
  workers: int,
  chunk_frames: int,
  progress: bool,
  overwrite: bool,
  note: Any,
) -> ChunkedResult:
  started = time.perf_counter()
  memory.release_freed_memory()
  src = source.path
  head = chunk_plan.head_frames(settings.smoothing, colorizer.batch_size)
  chunks = chunk_plan.plan_chunks(source.total, chunk_frames, head)
  fp = chunk_files.fingerprint(
    colorizer,
    source,
    {  # the frame ranges are in the chunks' names; the threads change no pixel
      "encode": dataclasses.astuple(settings.encode),
      "smoothing": settings.smoothing,
      "cut_threshold": settings.cut_threshold,
      "compare": settings.compare,
      "head": head,
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
  done = [chunk_files.is_finished(folder, fp, c) for c in chunks]
  todo = [c for c, finished in zip(chunks, done, strict=True) if not finished]
  resumed = len(chunks) - len(todo)
  workers = max(1, min(workers, len(todo) or 1))
  if resumed:
    note(f"{src}: resumed {resumed} of {len(chunks)} chunks from {folder}")
  bar = progress_lib.Progress(os.path.basename(src), source.total, unit="frames", enabled=progress)
  bar.update(sum(c.frames for c in chunks) - sum(c.frames for c in todo))
  lock = threading.Lock()
  # One thread at a time runs jax work. Over several devices a batch's programs also finish
  # before the lock is let go: the smoothing gathers the sharded batch (a collective), and
  # with other threads' programs (another batch, or the eager ops of --consistency) running at
  # once on 4 CPU devices, XLA's rendezvous deadlocked. Over one device calls stay asynchronous.
  dispatch = threading.Lock()
  stop = threading.Event()
  tails = chunk_worker.Tails(stop)
  for c, finished in zip(chunks, done, strict=True):
    if finished and c.index + 1 < len(chunks) and not done[c.index + 1]:
      tails.put(
        c.index, chunk_worker.Tail(chunk_files.load_state(paths[c.index][chunk_files.STATE]))
      )

  def on_frames(n: int) -> None:
    with lock:
      bar.update(n)

  jobs: queue.Queue = queue.Queue()
  for c in todo:
    jobs.put(c)
  errors: list[BaseException] = []
  in_progress: set[str] = set()  # the temporary files being written
  stats: list[chunk_worker.ChunkStats] = []

  def work() -> None:
    while not stop.is_set():
      try:
        chunk = jobs.get_nowait()
      except queue.Empty:
        return
      try:
        result = chunk_worker.encode_chunk(
          colorizer,
          source,
          chunk,
          paths[chunk.index],
          settings,
          tails=tails,
          stop=stop,
          on_frames=on_frames,
          dispatch=dispatch,
          in_progress=in_progress,
        )
        with lock:
          stats.append(result)
      except chunk_worker.Stopped:
        return
      except BaseException as e:  # noqa: BLE001 (handed to the main thread)
        with lock:
          errors.append(e)
        stop.set()
        return

  threads = [
    threading.Thread(target=work, name=f"chunk worker {i}", daemon=True) for i in range(workers)
  ]
  try:
    for thread in threads:
      thread.start()
    for thread in threads:
      while thread.is_alive():
        thread.join(timeout=0.2)
  except BaseException:
    stop.set()  # Ctrl-C / SIGTERM: files in progress are removed, finished chunks kept
    for thread in threads:
      thread.join(timeout=30.0)
    for tmp in list(in_progress):  # also those of workers still busy (a slow encoder)
      with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
    bar.close()
    raise
  bar.close()
  if errors:
    if isinstance(errors[0], CannotSplit):
      shutil.rmtree(folder, ignore_errors=True)
    raise errors[0]
  segments = [
    (p[kind], frames)
    for c, p in zip(chunks, paths, strict=True)
    for kind, frames in ((chunk_files.HEAD, c.body - c.start), (chunk_files.BODY, c.end - c.body))
    if frames
  ]
  audio = "none"
  with files.atomic_output(dst, overwrite=overwrite) as tmp:
    video_tmp = files.temp_name(dst, "video") if source.info.audio_codec else tmp
    try:
      chunk_files.join(segments, source.fps, folder, video_tmp)
      if source.info.audio_codec:
        audio = writer.mux_audio(video_tmp, src, tmp)
    finally:
      if video_tmp != tmp and os.path.exists(video_tmp):
        os.remove(video_tmp)
  shutil.rmtree(folder, ignore_errors=True)
  result = ChunkedResult(
    src=src,
    dst=dst,
    frames=source.total,
    width=source.info.width * (2 if settings.compare else 1),
    height=source.info.height,
    fps=float(source.fps),
    seconds=time.perf_counter() - started,
    audio=audio,
    scene_cuts=max(sum(s.cuts for s in stats) - 1, 0) if not resumed else 0,
    decoder=source.backend,
    chunks=len(chunks),
    resumed=resumed,
    workers=workers,
  )
  if settings.consistency and not resumed:
    for name in ("consistency_in", "consistency_out"):
      total = sum(getattr(s, name)[0] for s in stats)
      count = sum(getattr(s, name)[1] for s in stats)
      setattr(result, name, total / count if count else None)
  return result
