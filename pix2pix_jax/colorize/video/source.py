"""The source stage: a clip's frames, all or a frame range, in batches decoded on a background
thread by decord or an ffmpeg pipe (frames as displayed, in SDR). Backends, windows and chunk
seeking: docs/video.md."""

import dataclasses
import fractions
import os
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pix2pix_jax import files
from pix2pix_jax.colorize.video import probe

if TYPE_CHECKING:
  import decord

DEFAULT_CHUNK_TIMEOUT = 120.0  # seconds a single chunk may take to decode
# Chunks between decord re-opens; 0: never. Each re-open starts a new read-ahead, so it is off.
DEFAULT_REOPEN_EVERY = 0
# The most decoded RGB a clip may amount to for decord to read it (docs/video.md).
DECORD_MAX_DECODED_BYTES = 512 << 20
MAX_DECODE_THREADS = 4  # more gains little at 1080p and takes cores from the encoder
_QUEUE_CHUNKS = 2  # decoded chunks waiting for the consumer
# HDR -> SDR: to linear light (100 nits = 1.0), BT.709 primaries, Hable's curve without
# desaturation, then BT.709 transfer and matrix (zscale is ffmpeg's libzimg filter).
TONEMAP_FILTER = (
  "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0,"
  "zscale=t=bt709:m=bt709:r=tv,format=yuv444p"
)


def _decord() -> Any:
  """The decord module; ImportError (or OSError from its library) where it is not usable."""
  import decord

  return decord


def usable_cores() -> int:
  """The cores this process may run on (its CPU affinity, e.g. a SLURM or taskset mask)."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except (AttributeError, OSError):
    return max(1, os.cpu_count() or 1)


def decode_threads(workers: int = 1) -> int:
  """Decoder threads for one of `workers` pipelines: min(cores // workers, 4), at least 1."""
  return max(1, min(MAX_DECODE_THREADS, usable_cores() // max(1, workers)))


def open_reader(path: str, threads: int | None = None) -> "decord.VideoReader":
  """decord reader on the CPU with `threads` decoder threads (None: `decode_threads()`);
  MediaError for anything it cannot open or that has no frames."""
  decord = _decord()
  try:
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads or decode_threads())
  except (decord.DECORDError, RuntimeError) as e:
    raise files.MediaError(f"{path}: cannot decode video ({_decord_message(e)})") from e
  if len(reader) == 0:
    raise files.MediaError(f"{path}: video has no frames")
  return reader


def _decord_message(e: Exception) -> str:
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  for line in lines:
    if "ERROR" in line or "Error" in line:
      return line.split("ERROR", 1)[-1].strip(" :") or line
  return lines[0] if lines else type(e).__name__


def average_fps(reader: "decord.VideoReader") -> fractions.Fraction:
  """The average frame rate as a fraction (29.97 -> 30000/1001)."""
  fps = reader.get_avg_fps()
  if not fps or not np.isfinite(fps) or fps <= 0:
    fps = 25.0
  return fractions.Fraction(fps).limit_denominator(1001)


def frame_rate(info: probe.VideoInfo, reader: "decord.VideoReader | None") -> fractions.Fraction:
  """The clip's frame rate: decord's average where it reads the clip, else the stream's
  nominal rate (25 where ffmpeg prints none)."""
  if reader is not None:
    return average_fps(reader)
  return fractions.Fraction(info.fps or 25.0).limit_denominator(1001)


def is_variable_rate(reader: "decord.VideoReader") -> bool:
  starts = reader.get_frame_timestamp(range(len(reader)))[:, 0]
  if len(starts) < 3:
    return False
  steps = np.diff(starts)
  return bool(steps.max() - steps.min() > 1e-3)


def _read_chunk(reader: "decord.VideoReader", indices: list[int]) -> tuple[np.ndarray | None, bool]:
  """(frames, ended). If get_batch fails, decodes frame by frame; the clip ends at the first
  frame that fails (decord's frame count can over-report)."""
  decord = _decord()
  try:
    frames, ended = reader.get_batch(indices).asnumpy(), False
  except decord.DECORDError:
    # get_batch also fails on some streams whose frames decode one at a time (e.g. VP8 in
    # WebM, which decord returns with 4 channels).
    decoded, ended = [], False
    for i in indices:
      try:
        decoded.append(reader[i].asnumpy())
      except decord.DECORDError:
        ended = True
        break
    frames = np.stack(decoded) if decoded else None
  if frames is not None and frames.shape[-1] != 3:
    frames = np.ascontiguousarray(frames[..., :3])
  return frames, ended


def _decord_chunks(
  path: str,
  chunk_size: int,
  reopen_every: int,
  reader: "decord.VideoReader | None",
  *,
  info: probe.VideoInfo | None = None,
  threads: int | None = None,
) -> Iterator[np.ndarray]:
  """decord's frames; where decord stops early (truncated file), the pipe's from there on."""
  reader = reader or open_reader(path, threads)
  total, done = len(reader), 0
  for k, start in enumerate(range(0, total, chunk_size)):
    if k and reopen_every and k % reopen_every == 0:
      del reader
      reader = open_reader(path, threads)
    frames, ended = _read_chunk(reader, list(range(start, min(start + chunk_size, total))))
    if frames is not None:
      done += len(frames)
      yield frames
    if ended:
      break
  else:
    return
  del reader
  # decord failed on frame `done`: ffmpeg may still decode it and the frames after it.
  try:
    yield from _ffmpeg_chunks(
      path, chunk_size, info or probe.probe(path), skip=done, threads=threads
    )
  except files.MediaError:
    if done == 0:
      raise


def _ffmpeg_command(
  path: str,
  info: probe.VideoInfo,
  frames: int | None = None,
  *,
  window: tuple[float, float] | None = None,
  threads: int | None = None,
) -> list[str]:
  """Raw RGB frames as displayed (ffmpeg autorotates), tone-mapped to SDR where HDR; only those
  of `window` (start, duration) seconds where given."""
  limit = ["-frames:v", str(frames)] if frames else []
  filters = [TONEMAP_FILTER] if info.hdr else []
  seek = []
  if window is not None:
    start, duration = window
    seek = window_args((start, duration + 1.0))  # stops decoding soon after the window
    if duration < float("inf"):
      filters.insert(0, f"trim=end={duration:.6f}")  # times count from `start`: the exact end
  vf = ["-vf", ",".join(filters)] if filters else []
  return [
    probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error",
    "-threads", str(threads or decode_threads()), *seek, "-i", path,
    "-map", "0:v:0", *limit, *vf, "-f", "rawvideo", "-pix_fmt", "rgb24",
    "-fps_mode", "passthrough", "pipe:1",
  ]  # fmt: skip


def window_args(window: tuple[float, float] | None) -> list[str]:
  """ffmpeg input options for a window (start, duration): -ss and -t (which counts from the first
  frame or packet at or after `start`: exact for stream copies, which cut by whole packets)."""
  if window is None:
    return []
  start, duration = window
  return ["-ss", f"{start:.6f}", *(["-t", f"{duration:.6f}"] if duration < float("inf") else [])]


def raw_frames(stream: Any, width: int, height: int, batch: int) -> Iterator[np.ndarray]:
  """uint8 [n <= batch, height, width, 3] arrays read from an rgb24 pipe until it ends."""
  frame_bytes = width * height * 3
  while True:
    data = stream.read(frame_bytes * batch)
    n = len(data) // frame_bytes
    if n:
      yield np.frombuffer(data[: n * frame_bytes], np.uint8).reshape(n, height, width, 3)
    if len(data) < frame_bytes * batch:
      return


def _ffmpeg_chunks(
  path: str,
  chunk_size: int,
  info: probe.VideoInfo,
  *,
  skip: int = 0,
  window: tuple[float, float] | None = None,
  threads: int | None = None,
) -> Iterator[np.ndarray]:
  """Frames piped out of ffmpeg, after the first `skip` (decoded and dropped)."""
  width, height = info.width, info.height
  frame_bytes = width * height * 3
  with tempfile.TemporaryFile() as log:
    cmd = _ffmpeg_command(path, info, window=window, threads=threads)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
    count = 0
    try:
      while skip:
        dropped = len(proc.stdout.read(frame_bytes * min(skip, chunk_size)))
        skip -= dropped // frame_bytes
        if dropped < frame_bytes:
          return
      for frames in raw_frames(proc.stdout, width, height, chunk_size):
        count += len(frames)
        yield frames
    finally:
      proc.kill()
      proc.wait()
    if count == 0:
      log.seek(0)
      cause = probe.last_line(log.read().decode(errors="replace"))
      if window is not None and cause == "no message":
        cause = f"no frame from {window[0]:g} s to {window[0] + window[1]:g} s"
      raise files.MediaError(f"{path}: cannot decode any frame ({cause})")


def first_frame_ffmpeg(path: str, info: probe.VideoInfo) -> np.ndarray | None:
  proc = subprocess.run(_ffmpeg_command(path, info, 1), capture_output=True, check=False)
  if len(proc.stdout) != info.width * info.height * 3:
    return None
  return np.frombuffer(proc.stdout, np.uint8).reshape(info.height, info.width, 3)


def choose_backend(
  path: str, info: probe.VideoInfo, *, threads: int | None = None
) -> tuple[str, "decord.VideoReader | None"]:
  """("decord", reader) where decord can be imported, the clip's decoded frames fit
  DECORD_MAX_DECODED_BYTES (by the frame count an MP4 declares, before decord opens it, and by
  decord's), need no display matrix or tone mapping, and decord decodes the first frame as
  ffmpeg does; else ("ffmpeg", None)."""
  if info.rotation is not None or info.hdr:
    return "ffmpeg", None
  declared = probe.declared_frames(path)  # before decord sizes its index by it
  if declared is not None and declared * info.width * info.height * 3 > DECORD_MAX_DECODED_BYTES:
    return "ffmpeg", None
  try:
    decord = _decord()
  except (ImportError, OSError):
    return "ffmpeg", None
  try:
    reader = open_reader(path, threads)
  except files.MediaError:
    if first_frame_ffmpeg(path, info) is None:
      raise
    return "ffmpeg", None
  if len(reader) * info.width * info.height * 3 > DECORD_MAX_DECODED_BYTES:
    return "ffmpeg", None
  reference = first_frame_ffmpeg(path, info)
  if reference is None:
    return "decord", reader
  try:
    first = reader[0].asnumpy()
    reader.seek(0)
  except decord.DECORDError:
    return "ffmpeg", None
  if first.shape != reference.shape or np.abs(first.astype(np.int16) - reference).mean() > 1.0:
    return "ffmpeg", None
  return "decord", reader


def iter_chunks(
  path: str,
  chunk_size: int,
  *,
  timeout: float = DEFAULT_CHUNK_TIMEOUT,
  reopen_every: int = DEFAULT_REOPEN_EVERY,
  reader: "decord.VideoReader | None" = None,
  backend: str = "decord",
  info: probe.VideoInfo | None = None,
  window: tuple[float, float] | None = None,
  threads: int | None = None,
) -> Iterator[np.ndarray]:
  """uint8 [n<=chunk_size, H, W, 3] chunks in order, decoded on a background thread.

  backend "decord" (VideoReader.get_batch) or "ffmpeg" (raw frames from a pipe; needs the
  clip's `probe.probe` info: displayed size, HDR transfer). window (start, duration) seconds:
  only those frames, from the pipe whatever `backend` says. threads: decoder threads (None:
  `decode_threads()`). The queue holds at most a couple of chunks; a chunk that takes longer
  than `timeout` raises MediaError (decord can hang on some files).
  """
  if backend == "decord" and window is None:
    source = _decord_chunks(path, chunk_size, reopen_every, reader, info=info, threads=threads)
    reader = None  # owned by `source` now, which closes it when it re-opens the file
  else:
    reader = None
    info = info or probe.probe(path)
    source = _ffmpeg_chunks(path, chunk_size, info, window=window, threads=threads)
  yield from in_background(source, path, timeout)


def in_background(items: Iterator[Any], name: str, timeout: float) -> Iterator[Any]:
  """`items` produced on a daemon thread, at most _QUEUE_CHUNKS ahead; an exception there is
  raised here, and an item that takes more than `timeout` seconds is a MediaError naming `name`."""
  q: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
  stop, done = threading.Event(), object()

  def put(item: Any) -> bool:
    while not stop.is_set():
      try:
        q.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def work() -> None:
    try:
      for item in items:
        if not put(item):
          items.close()
          return
      put(done)
    except Exception as e:  # handed to the consumer, which raises it
      put(e)

  thread = threading.Thread(target=work, name=f"decode {os.path.basename(name)}", daemon=True)
  thread.start()
  try:
    while True:
      try:
        item = q.get(timeout=timeout)
      except queue.Empty:
        raise files.MediaError(f"{name}: decoder stalled for {timeout:.0f} s") from None
      if item is done:
        return
      if isinstance(item, Exception):
        raise item
      yield item
  finally:
    stop.set()
    thread.join(timeout=1.0)


# Containers with an index and presentation timestamps that ffmpeg seeks in by timestamp,
# landing on a keyframe before it. Not AVI: its MPEG-4 packets carry no presentation times
# (a chunk of such a clip decoded a frame short of its plan, so it ran in one piece).
SEEKABLE_EXTENSIONS = (".mp4", ".m4v", ".mov", ".3gp", ".mkv", ".webm")


class CannotSplit(Exception):
  """The clip cannot be split frame exactly; it is colourised serially instead."""


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
  backend, decord_reader = choose_backend(path, info)
  if decord_reader is not None:
    source = Source(path, info, backend, len(decord_reader), average_fps(decord_reader))
    del decord_reader
    return source
  if os.path.splitext(path)[1].lower() not in SEEKABLE_EXTENSIONS:
    raise CannotSplit(f"its container ({os.path.splitext(path)[1]}) does not seek frame exactly")
  times, start = packet_times(path)
  if len(times) < 2:
    raise CannotSplit("too few frames")
  fps = fractions.Fraction(info.fps or 25.0).limit_denominator(1001)
  return Source(path, info, backend, len(times), fps, [t - start for t in times])


def read_range(
  source: Source, first: int, end: int, batch: int, threads: int
) -> Iterator[np.ndarray]:
  """Frames [first, end) of the clip in batches, with `threads` decoder threads."""
  if source.backend == "decord":
    return _decord_range(source, first, end, batch, threads)
  return _ffmpeg_range(source, first, end, batch, threads)


def _ffmpeg_range(
  source: Source, first: int, end: int, batch: int, threads: int
) -> Iterator[np.ndarray]:
  """Frames [first, end) from the ffmpeg pipe, seeking by timestamp (module docstring)."""
  times = source.times
  seek = []
  if first > 0:
    seek += ["-ss", f"{(times[first - 1] + times[first]) / 2:.6f}"]
  if end < source.total:
    # -t counts from the first frame kept (with -t from the seek point, WebM chunks of 24 fps
    # VP8 took one frame too many: its times are rounded to milliseconds).
    seek += ["-t", f"{(times[end - 1] + times[end]) / 2 - times[first]:.6f}"]
  cmd = _ffmpeg_command(source.path, source.info, threads=threads)
  i = cmd.index("-i")
  cmd[i:i] = seek
  with tempfile.TemporaryFile() as log:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
    try:
      yield from raw_frames(proc.stdout, source.info.width, source.info.height, batch)
    finally:
      proc.kill()
      proc.wait()


def _decord_range(
  source: Source, first: int, end: int, batch: int, threads: int
) -> Iterator[np.ndarray]:
  """Frames [first, end) by index with decord."""
  decord_reader = open_reader(source.path, threads)
  for a in range(first, end, batch):
    frames, ended = _read_chunk(decord_reader, list(range(a, min(a + batch, end))))
    if frames is not None:
      yield frames
    if ended:
      return
