"""Long clips in chunks: N decode -> colourise -> encode pipelines at once, joined, resumable.

  pix2pix-colorize --workdir runs/x film.mkv -o out.mkv --workers 4 --chunk-seconds 60

Split: the clip's frames are cut into chunks of `--chunk-seconds` (frame ranges [a, b)). A chunk
is decoded on its own: by frame index with decord where the serial path would read the clip with
decord, else by the ffmpeg pipe seeking to the midpoint between frames a-1 and a and reading up
to the midpoint between frames b-1 and b (`-ss`/`-t` on the input: ffmpeg's accurate seek trims
by timestamp, and a midpoint is half a frame away from every frame, so each frame lands in
exactly one chunk; every chunk's frame count is checked against the plan). The frame times
come from the demuxer's packet list (no decoding). Containers whose seeking is not frame exact
(MPEG-TS/PS, FLV, AVI, ...: byte-position seeks that land inside a GOP, or no presentation
times) are colourised serially, and so is a clip whose chunk decodes to another frame count
than planned (reported; the chunks are dropped, nothing is half-written).

Workers: N threads of one process share one Colorizer, each running decode -> colourise ->
encode on the next chunk not yet done; decord, the ffmpeg pipes and XLA release the GIL. The
jax calls take a lock (see `_run_chunked`): they are asynchronous over one device, so the lock
only orders their dispatch; over several devices each batch finishes before the next starts.
The chunks are joined by stream copy (ffmpeg's concat demuxer) and the source's audio is added
once, as the serial path does (`writer.mux_audio`). A lossless codec (--codec ffv1 --pix-fmt
gbrp) gives a serial run's frames; a lossy one differs by the encoder's restart at each join.

Smoothing across joins: each chunk first runs the model over the `warmup_frames(s)` frames just
before it, without encoding them: ceil(log(1/1024) / log(s)) frames (20 at the default 0.7), after
which the EMA's state differs from the serial run's by at most s^W <= 1/1024 of the chroma
range, below 1/255 of a pixel value. A scene cut inside the warm-up resets both runs alike.

Resume: chunks are written to `.NAME.chunks/` beside the output as `<fingerprint>-<a>-<b>.nut`
(NUT keeps the stream's own 1/fps time base). The fingerprint covers the model's weights, the
colour, smoothing (and warm-up), batch and encode settings and the source (path, size, mtime),
and the name the chunk's frame range, so changed flags or a changed model never reuse a chunk.
The default chunk length depends on the clip only (`default_chunk_seconds`), not on --workers.
A chunk is encoded under a temporary name and renamed only once its encoder has finished and its
frame count is right: a chunk file is always complete. The same command run again reuses the
chunk files it finds ("resumed R of M chunks"); chunks of another fingerprint are removed, and
the folder is removed after the join.
Ctrl-C / SIGTERM stop the workers, remove the chunks in progress and keep the finished ones.

Default --workers (`default_workers`): min(by cores, by memory), at least 1, at most 16:
  by cores: usable cores // 2 where the model runs on an accelerator (a pipeline keeps about two
    cores busy: the decoder and the encoder), but at least one per accelerator; cores // 4 where
    the model runs on the CPU too (it needs the cores as well);
  by memory: half the available memory (MemAvailable, or a lower cgroup limit) over one
    pipeline's frames in flight (`pipeline_bytes`: about 12 batches of RGB frames plus 40 frames
    for the decoder and encoder, plus 64 MiB).
"""

import contextlib
import dataclasses
import fractions
import hashlib
import math
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from pix2pix_jax import files
from pix2pix_jax import progress as progress_lib
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import memory, pipeline, probe, reader, writer

# Default chunk length: DURATION / TARGET_CHUNKS, within these bounds. Short enough that a clip
# has a few chunks per worker (a kill loses the N chunks in progress, about N / 2 chunks' work:
# 48 chunks keep that under a sixth of the clip up to 16 workers), long enough that a chunk's
# fixed costs (two ffmpeg starts, the seek's decode from the keyframe before it, the EMA warm-up,
# a new encoder) stay small. It does not depend on --workers, so a rerun with other workers
# plans the same chunks and reuses them.
DEFAULT_CHUNK_SECONDS = 60.0
MIN_DEFAULT_CHUNK_SECONDS = 5.0
TARGET_CHUNKS = 48
MAX_DEFAULT_WORKERS = 16
# Containers with an index and presentation timestamps that ffmpeg seeks in by timestamp,
# landing on a keyframe before it. Not AVI: its MPEG-4 packets carry no presentation times
# (a chunk of such a clip decoded a frame short of its plan, so it ran in one piece).
SEEKABLE_EXTENSIONS = (".mp4", ".m4v", ".mov", ".3gp", ".mkv", ".webm")
CHUNK_EXT = ".nut"
_FORMAT_VERSION = "1"
_CHUNK_NAME = re.compile(r"^([0-9a-f]{16})-(\d{9})-(\d{9})\.nut$")


# ---------------------------------------------------------------------------------------------
# How many workers


def usable_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def available_memory() -> int | None:
  """Bytes this process may still use: MemAvailable, or a lower cgroup v2 limit's headroom."""
  found = None
  with contextlib.suppress(OSError, ValueError):
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          found = int(line.split()[1]) * 1024
  with contextlib.suppress(OSError, ValueError):
    with open("/sys/fs/cgroup/memory.max") as f:
      limit = f.read().strip()
    if limit != "max":
      with open("/sys/fs/cgroup/memory.current") as f:
        headroom = int(limit) - int(f.read().strip())
      found = headroom if found is None else min(found, headroom)
  return found


def pipeline_bytes(width: int, height: int, batch_size: int) -> int:
  """About what one decode -> colourise -> encode pipeline holds: ~12 batches of RGB frames
  (decode queue, host and device copies, float intermediates, the encode queue) and ~40
  frames for the decoder's references and the encoder's look-ahead, plus 64 MiB."""
  frame = width * height * 3
  return frame * (12 * batch_size + 40) + (64 << 20)


def default_workers(
  width: int,
  height: int,
  batch_size: int,
  *,
  cores: int | None = None,
  accelerators: int | None = None,
  memory_bytes: int | None = None,
) -> int:
  """The default --workers (see the module docstring)."""
  cores = usable_cores() if cores is None else cores
  if accelerators is None:
    accelerators = sum(d.platform != "cpu" for d in jax.local_devices())
  by_cores = max(cores // 2, accelerators) if accelerators else cores // 4
  memory_bytes = available_memory() if memory_bytes is None else memory_bytes
  by_memory = MAX_DEFAULT_WORKERS
  if memory_bytes is not None:
    by_memory = int(0.5 * memory_bytes // pipeline_bytes(width, height, batch_size))
  return max(1, min(by_cores, by_memory, MAX_DEFAULT_WORKERS))


def default_chunk_seconds(duration: float) -> float:
  """The default --chunk-seconds: DURATION / TARGET_CHUNKS, 5 to 60 s."""
  seconds = duration / TARGET_CHUNKS
  return min(DEFAULT_CHUNK_SECONDS, max(MIN_DEFAULT_CHUNK_SECONDS, seconds))


def warmup_frames(smoothing: float) -> int:
  """Frames before a chunk run through the model so that its EMA converges (module docstring)."""
  if smoothing <= 0:
    return 0
  return math.ceil(math.log(1 / 1024) / math.log(smoothing))


# ---------------------------------------------------------------------------------------------
# The plan


class CannotSplit(Exception):
  """The clip cannot be split frame exactly; it is colourised serially instead."""


@dataclasses.dataclass(frozen=True)
class Chunk:
  warm: int  # first frame decoded (warm-up starts here)
  start: int  # first frame encoded
  end: int  # one past the last frame

  @property
  def frames(self) -> int:
    return self.end - self.start


@dataclasses.dataclass
class Source:
  """What chunks need to know about the clip."""

  path: str
  info: probe.VideoInfo
  backend: str  # "decord" | "ffmpeg"
  total: int
  fps: fractions.Fraction
  times: list[float] | None = None  # ffmpeg: sorted frame times, seconds from the file's start


def packet_times(path: str) -> tuple[list[float], float]:
  """(sorted presentation times of the first video stream's packets, the file's start time),
  both in seconds, from the demuxer alone (no decoding)."""
  cmd = [probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path, "-map", "0:v:0"]
  cmd += ["-c", "copy", "-copyts", "-f", "framecrc", "-"]
  proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
  if proc.returncode:
    raise files.MediaError(f"{path}: cannot read packets ({probe.ffmpeg_cause(proc.stderr)})")
  start = re.search(r"Duration: [^,]*, start: (-?[\d.]+)", proc.stderr)
  base, times = None, []
  for line in proc.stdout.splitlines():
    if line.startswith("#tb 0:"):
      num, den = line.split(":", 1)[1].strip().split("/")
      base = fractions.Fraction(int(num), int(den))
    elif line and not line.startswith("#") and base is not None:
      fields = [f.strip() for f in line.split(",")]
      if fields[0] == "0":
        times.append(float(int(fields[2]) * base))
  return sorted(times), float(start.group(1)) if start else 0.0


def open_source(path: str, info: probe.VideoInfo) -> Source:
  """The clip's backend, frame count and rate as the serial path sees them; CannotSplit where
  its container does not seek frame exactly."""
  backend, decord_reader = reader.choose_backend(path, info)
  if decord_reader is not None:
    source = Source(path, info, backend, len(decord_reader), reader.average_fps(decord_reader))
    del decord_reader
    return source
  if os.path.splitext(path)[1].lower() not in SEEKABLE_EXTENSIONS:
    raise CannotSplit(f"its container ({os.path.splitext(path)[1]}) does not seek frame exactly")
  times, start = packet_times(path)
  if len(times) < 2:
    raise CannotSplit("too few frames")
  fps = fractions.Fraction(info.fps or 25.0).limit_denominator(1001)
  return Source(path, info, backend, len(times), fps, [t - start for t in times])


def plan_chunks(total: int, chunk_frames: int, warmup: int) -> list[Chunk]:
  chunk_frames = max(1, chunk_frames)
  return [
    Chunk(max(0, a - warmup), a, min(a + chunk_frames, total))
    for a in range(0, total, chunk_frames)
  ]


# ---------------------------------------------------------------------------------------------
# Decoding one chunk


def _ffmpeg_range(source: Source, first: int, end: int, batch: int) -> Iterator[np.ndarray]:
  """Frames [first, end) from the ffmpeg pipe, seeking by timestamp (module docstring)."""
  times = source.times
  seek = []
  if first > 0:
    seek += ["-ss", f"{(times[first - 1] + times[first]) / 2:.6f}"]
  if end < source.total:
    # -t counts from the first frame kept (with -t from the seek point, WebM chunks of 24 fps
    # VP8 took one frame too many: its times are rounded to milliseconds).
    seek += ["-t", f"{(times[end - 1] + times[end]) / 2 - times[first]:.6f}"]
  cmd = reader._ffmpeg_command(source.path, source.info)
  i = cmd.index("-i")
  cmd[i:i] = seek
  with tempfile.TemporaryFile() as log:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
    try:
      yield from reader.raw_frames(proc.stdout, source.info.width, source.info.height, batch)
    finally:
      proc.kill()
      proc.wait()


def _decord_range(source: Source, first: int, end: int, batch: int) -> Iterator[np.ndarray]:
  """Frames [first, end) by index with decord."""
  decord_reader = reader.open_reader(source.path)
  for a in range(first, end, batch):
    frames, ended = reader._read_chunk(decord_reader, list(range(a, min(a + batch, end))))
    if frames is not None:
      yield frames
    if ended:
      return


# ---------------------------------------------------------------------------------------------
# Resume: names and fingerprint

_model_digests: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def model_digest(colorizer: colorizer_lib.Colorizer) -> str:
  """A digest of the generator's weights (computed once per Colorizer)."""
  digest = _model_digests.get(colorizer)
  if digest is None:
    h = hashlib.blake2b(digest_size=16)
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(colorizer.variables))
    for path, leaf in leaves:
      leaf = np.asarray(leaf)
      h.update(f"{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape}".encode())
      h.update(np.ascontiguousarray(leaf).tobytes())
    digest = _model_digests[colorizer] = h.hexdigest()
  return digest


def fingerprint(colorizer: colorizer_lib.Colorizer, source: Source, settings: dict) -> str:
  """16 hex digits naming everything a chunk's pixels depend on (module docstring)."""
  stat = os.stat(source.path)
  reference = colorizer.reference
  parts = {
    "version": _FORMAT_VERSION,
    "model": model_digest(colorizer),
    "color_space": colorizer.color_space,
    "render_size": colorizer.render_size,
    "batch_size": colorizer.batch_size,
    "saturation": float(colorizer.saturation),
    "reference": None
    if reference is None
    else hashlib.sha256(
      b"".join(np.asarray(x, np.float64).tobytes() for x in jax.tree_util.tree_leaves(reference))
    ).hexdigest(),
    # Colour hints given to every frame (where the Colorizer takes them).
    "hints": getattr(colorizer, "frame_hints_digest", lambda: None)(),
    "source": [os.path.abspath(source.path), stat.st_size, stat.st_mtime_ns],
    "backend": source.backend,
    "total": source.total,
    "fps": str(source.fps),
    **settings,
  }
  return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:16]


def chunk_folder(dst: str) -> str:
  """The hidden folder beside `dst` that holds its finished chunks: `.NAME.chunks`."""
  folder, name = os.path.split(os.path.abspath(dst))
  return os.path.join(folder, f".{name}.chunks")


def chunk_name(fp: str, chunk: Chunk) -> str:
  return f"{fp}-{chunk.start:09d}-{chunk.end:09d}{CHUNK_EXT}"


def _tidy(folder: str, fp: str) -> None:
  """Removes what a killed run left in `folder` (its chunks in progress) and chunks of other
  fingerprints."""
  files.remove_stale_temps(folder)
  for name in os.listdir(folder):
    match = _CHUNK_NAME.match(name)
    if (match and match.group(1) != fp) or name == "concat.txt":
      with contextlib.suppress(OSError):
        os.remove(os.path.join(folder, name))


# ---------------------------------------------------------------------------------------------
# Running


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


class _Stopped(Exception):
  pass


@dataclasses.dataclass
class _ChunkStats:
  cuts: int = 0
  consistency_in: tuple[float, int] = (0.0, 0)
  consistency_out: tuple[float, int] = (0.0, 0)


def _encode_chunk(
  colorizer: colorizer_lib.Colorizer,
  source: Source,
  chunk: Chunk,
  path: str,
  tmp: str,
  *,
  encode: writer.EncodeOptions,
  smoothing: float,
  cut_threshold: float,
  compare: bool,
  consistency: bool,
  timeout: float,
  stop: threading.Event,
  on_frames: Any,
  dispatch: threading.Lock,
) -> _ChunkStats:
  """Decodes frames [chunk.warm, chunk.end), colourises them and encodes [chunk.start,
  chunk.end) into `path`, written as `tmp` and renamed when complete."""
  batch = colorizer.batch_size
  read = _decord_range if source.backend == "decord" else _ffmpeg_range
  items = reader.in_background(read(source, chunk.warm, chunk.end, batch), source.path, timeout)
  state = colorizer.initial_state() if smoothing > 0 else None
  stats = _ChunkStats()
  measure_in = pipeline._Consistency() if consistency else None
  measure_out = pipeline._Consistency() if consistency else None
  encoder, pending, position, written = None, None, chunk.warm, 0
  several_devices = colorizer.mesh.size > 1

  def dispatched(method: Any, frames: np.ndarray, state: Any) -> Any:
    """A Colorizer method on a batch, holding the dispatch lock (see _run_chunked)."""
    with dispatch:
      result = method(frames, state=state, strength=smoothing, cut_threshold=cut_threshold)
      if several_devices:
        jax.block_until_ready(result)
    return result

  def run_model(frames: np.ndarray, state: Any) -> tuple[Any, Any, Any]:
    return dispatched(colorizer.colorize_batch, frames, state)

  def flush() -> None:
    nonlocal written
    out, n, cut_flags, frames = pending
    rgb = np.asarray(out)[:n]
    if measure_out is not None:
      with dispatch:  # jax work too (see run_model)
        measure_out.add(rgb)
    encoder.write(rgb if not compare else colorizer_lib.side_by_side(frames, rgb))
    if cut_flags is not None:
      stats.cuts += int(np.asarray(cut_flags)[:n].sum())
    written += n
    on_frames(n)

  try:
    for frames in items:
      if stop.is_set():
        raise _Stopped
      warm = min(len(frames), max(0, chunk.start - position))
      position += len(frames)
      if warm and consistency and position - len(frames) + warm == chunk.start:
        out, state, _ = run_model(frames[:warm], state)
        # The frame before the chunk: its pair with the chunk's first frame counts here.
        measure_in._last = pipeline._small(frames[warm - 1 : warm])
        measure_out._last = pipeline._small(np.asarray(out)[warm - 1 : warm])
      elif warm:  # only the smoothing state: the warm-up frames are not composed
        state = dispatched(colorizer.advance, frames[:warm], state)
      frames = frames[warm:]
      if not len(frames):
        continue
      if encoder is None:
        height, width = frames.shape[1:3]
        encoder = writer.FrameWriter(tmp, width * (2 if compare else 1), height, source.fps, encode)
      out, state, cut_flags = run_model(frames, state)
      if measure_in is not None:
        with dispatch:
          measure_in.add(frames)
      if pending is not None:
        flush()
      pending = (out, len(frames), cut_flags, frames if compare else None)
    if pending is not None:
      flush()
    if position != chunk.end or written != chunk.frames or encoder is None:
      raise CannotSplit(
        f"frames {chunk.start}-{chunk.end} decoded to {position - chunk.warm} frames, "
        f"expected {chunk.end - chunk.warm}"
      )
    encoder.close()
    encoder = None
    os.replace(tmp, path)
  except BaseException:
    if encoder is not None:
      encoder.abort()
    raise
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
  if consistency:
    stats.consistency_in = (measure_in.total, measure_in.count)
    stats.consistency_out = (measure_out.total, measure_out.count)
  return stats


def _join(
  chunks: list[Chunk], chunk_paths: list[str], fps: fractions.Fraction, folder: str, out: str
) -> None:
  """The chunks' video streams, one after the other, into `out` by stream copy. Each chunk's
  duration is given (frames / fps): the concat demuxer would otherwise take the last frame's
  time as a chunk's end and lose a frame's duration at every join."""
  listing = os.path.join(folder, "concat.txt")
  with open(listing, "w") as f:
    for chunk, path in zip(chunks, chunk_paths, strict=True):
      f.write(f"file '{os.path.basename(path)}'\n")
      f.write(f"duration {float(chunk.frames / fps):.9f}\n")
  cmd = [probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
  cmd += ["-f", "concat", "-safe", "0", "-i", listing, "-map", "0:v:0", "-c", "copy"]
  if os.path.splitext(out)[1].lower() in (".mp4", ".m4v", ".mov"):
    cmd += ["-movflags", "+faststart"]
  proc = subprocess.run([*cmd, out], capture_output=True, text=True, errors="replace")
  os.remove(listing)
  if proc.returncode:
    raise files.MediaError(f"{out}: cannot join the chunks ({probe.ffmpeg_cause(proc.stderr)})")


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
    workers = default_workers(info.width, info.height, colorizer.batch_size)
  if workers <= 1 and chunk_seconds is None:
    return pipeline.colorize_video(colorizer, src, dst, **serial)
  files.check_output(dst, overwrite=overwrite)
  codec = writer.resolve_codec(encode, dst)  # the chunks' codec is the output's
  try:
    source = open_source(src, info)
  except CannotSplit as e:
    note(f"{src}: colourising in one piece: {e}")
    return pipeline.colorize_video(colorizer, src, dst, **serial)
  seconds = chunk_seconds or default_chunk_seconds(source.total / float(source.fps))
  chunk_frames = max(1, round(seconds * float(source.fps)))
  if source.total <= chunk_frames:
    return pipeline.colorize_video(colorizer, src, dst, **serial)
  try:
    return _run_chunked(
      colorizer,
      source,
      dst,
      workers=workers,
      chunk_frames=chunk_frames,
      note=note,
      **{**serial, "encode": dataclasses.replace(encode, codec=codec)},
    )
  except CannotSplit as e:
    note(f"{src}: cannot be split frame exactly ({e}); colourising in one piece")
    return pipeline.colorize_video(colorizer, src, dst, **serial)


def _run_chunked(
  colorizer: colorizer_lib.Colorizer,
  source: Source,
  dst: str,
  *,
  workers: int,
  chunk_frames: int,
  encode: writer.EncodeOptions,
  smoothing: float,
  cut_threshold: float,
  consistency: bool,
  compare: bool,
  progress: bool,
  timeout: float,
  overwrite: bool,
  note: Any,
) -> ChunkedResult:
  started = time.perf_counter()
  memory.release_freed_memory()
  src = source.path
  warmup = warmup_frames(smoothing)
  chunks = plan_chunks(source.total, chunk_frames, warmup)
  settings = {
    "encode": dataclasses.astuple(encode),
    "smoothing": smoothing,
    "cut_threshold": cut_threshold,
    "compare": compare,
    "warmup": warmup,  # the frame range is in each chunk's name
  }
  fp = fingerprint(colorizer, source, settings)
  folder = chunk_folder(dst)
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise files.MediaError(f"{dst}: cannot create {folder} ({files.describe_os_error(e)})") from e
  _tidy(folder, fp)
  paths = [os.path.join(folder, chunk_name(fp, c)) for c in chunks]
  todo = [(c, p) for c, p in zip(chunks, paths, strict=True) if not os.path.exists(p)]
  resumed = len(chunks) - len(todo)
  workers = max(1, min(workers, len(todo) or 1))
  if resumed:
    note(f"{src}: resumed {resumed} of {len(chunks)} chunks from {folder}")
  bar = progress_lib.Progress(os.path.basename(src), source.total, unit="frames", enabled=progress)
  bar.update(sum(c.frames for c in chunks) - sum(c.frames for c, _ in todo))
  lock = threading.Lock()
  # One thread at a time runs jax work. Over several devices a batch's programs also finish
  # before the lock is let go: the smoothing gathers the sharded batch (a collective), and
  # with other threads' programs (another batch, or the eager ops of --consistency) running at
  # once on 4 CPU devices, XLA's rendezvous deadlocked. Over one device calls stay asynchronous.
  dispatch = threading.Lock()

  def on_frames(n: int) -> None:
    with lock:
      bar.update(n)

  jobs: queue.Queue = queue.Queue()
  for item in todo:
    jobs.put(item)
  stop = threading.Event()
  errors: list[BaseException] = []
  partial: dict[int, str] = {}  # worker -> the temporary file of the chunk it encodes
  stats: list[_ChunkStats] = []

  def work(worker: int) -> None:
    while not stop.is_set():
      try:
        chunk, path = jobs.get_nowait()
      except queue.Empty:
        return
      partial[worker] = files.temp_name(path, "partial")
      try:
        result = _encode_chunk(
          colorizer,
          source,
          chunk,
          path,
          partial[worker],
          encode=encode,
          smoothing=smoothing,
          cut_threshold=cut_threshold,
          compare=compare,
          consistency=consistency,
          timeout=timeout,
          stop=stop,
          on_frames=on_frames,
          dispatch=dispatch,
        )
        with lock:
          stats.append(result)
      except _Stopped:
        return
      except BaseException as e:  # noqa: BLE001 (handed to the main thread)
        with lock:
          errors.append(e)
        stop.set()
        return

  threads = [
    threading.Thread(target=work, args=(i,), name=f"chunk worker {i}", daemon=True)
    for i in range(workers)
  ]
  try:
    for thread in threads:
      thread.start()
    for thread in threads:
      while thread.is_alive():
        thread.join(timeout=0.2)
  except BaseException:
    stop.set()  # Ctrl-C / SIGTERM: chunks in progress are removed, finished ones kept
    for thread in threads:
      thread.join(timeout=30.0)
    for tmp in partial.values():  # also those of workers still busy (a slow encoder)
      with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
    bar.close()
    raise
  if errors:
    bar.close()
    error = errors[0]
    if isinstance(error, CannotSplit):
      shutil.rmtree(folder, ignore_errors=True)
    raise error
  bar.close()
  audio = "none"
  with files.atomic_output(dst, overwrite=overwrite) as tmp:
    video_tmp = files.temp_name(dst, "video") if source.info.audio_codec else tmp
    try:
      _join(chunks, paths, source.fps, folder, video_tmp)
      if source.info.audio_codec:
        audio = writer.mux_audio(video_tmp, src, tmp)
    finally:
      if video_tmp != tmp and os.path.exists(video_tmp):
        os.remove(video_tmp)
  shutil.rmtree(folder, ignore_errors=True)
  width = source.info.width * (2 if compare else 1)
  result = ChunkedResult(
    src=src,
    dst=dst,
    frames=source.total,
    width=width,
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
  if consistency and not resumed:
    for name in ("consistency_in", "consistency_out"):
      total = sum(getattr(s, name)[0] for s in stats)
      count = sum(getattr(s, name)[1] for s in stats)
      setattr(result, name, total / count if count else None)
  return result
