"""Video colourisation: decord reader thread -> Colorizer -> ffmpeg writer thread -> audio remux.

Pipeline: a reader thread decodes fixed-size chunks with decord's `get_batch` into a bounded
queue; the main thread dispatches chunk k to the device while chunk k+1 decodes and chunk k-1
is written; a writer thread pipes raw RGB frames into ffmpeg (imageio-ffmpeg's binary). At most
a few chunks are alive at once, so memory does not grow with the clip's length.

Output: the same frame count, width and height as the source. Frame rate: the source's average
rate, constant. A variable-frame-rate source becomes constant-rate at its average rate (frame
count / duration): same frames, same duration, so audio stays in sync at both ends; individual
frames may move by up to the source's jitter. The audio streams are copied, or re-encoded (AAC;
Opus for WebM) only where the output container cannot hold them.

Codec: H.264 (libx264, yuv420p, CRF 18, preset veryfast) by default; VP9 for .webm outputs.
4:2:0 H.264/H.265 cannot code an odd width or height, so such frames are encoded as yuv444p at
their exact size (the size is never changed); VP8/VP9/MPEG-4/MJPEG code odd sizes in 4:2:0
directly.

decord guards: before reading, decord's first frame is compared with ffmpeg's; where decord
misreads the stream (seen here: VP8 in WebM comes back with 4 garbled channels, full-range MJPEG
and odd-sized VP9 come back with wrong values) or cannot open a file that ffmpeg still decodes
(truncated MP4), frames are piped out of ffmpeg instead (`VideoResult.decoder` says which). A
frame count that over-reports ends the clip at the first frame that fails to decode; a stalled
decoder raises after `timeout` seconds instead of hanging. decord (0.6) also decodes ahead of
its consumer without bound (dmlc/decord#157, #208): its reading loop pushes packets to its
decoding thread for as long as no decoded frame is ready, and when the consumer (the model) is
slower than decoding, those packets become decoded frames held in decord's queue, up to the
rest of the clip: 1.45 GB for a 900-frame 720p clip read at 80 fps, 850-3500 frames of lead on
a 320x240 clip whatever its thread count. So decord reads only clips whose decoded frames fit
`DECORD_MAX_DECODED_BYTES`; longer or larger clips come from the ffmpeg pipe, whose memory is
bounded by the pipe (as fast at 720p, 0.76x decord's rate at 320x240, both far above the
model's). The reader can be re-opened every `reopen_every` chunks, but that is off by default:
each re-open starts a new run-ahead (3000 frames peaked at 1093 MB re-opening every 16 chunks,
885 MB every 64, 619 MB never).

Temporal smoothing (default 0.7): an EMA of the predicted chroma, reset at scene cuts (see
inference.py). Measured on 100-frame 320x240 sample clips with the quickstart model after 600
steps (temporal consistency of the output, higher is steadier; luma PSNR output vs source, dB):

  clip                      smoothing  cuts found  consistency_out  luma PSNR
  3 photos (2 hard cuts)    0 (off)    -           0.96695          41.80
                            0.3        2           0.96809          41.81
                            0.5        2           0.96997          41.80
                            0.7        2           0.97248          41.81
                            0.9        2           0.97735          41.80
  2 photos (1 hard cut)     0 (off)    -           0.96843          42.19
                            0.3        1           0.97009          42.19
                            0.5        1           0.97075          42.18
                            0.7        1           0.97228          42.19
                            0.9        1           0.97617          42.19
  (source consistency: 0.96343 and 0.96002)

Consistency rises with the strength and luma is untouched (smoothing changes chroma only);
every cut was found, so colour never bleeds across shots. The cost, which these numbers do not
show, is lag: a chroma change settles with a time constant of 1 / (1 - s) frames (10 frames,
0.4 s at 25 fps, for 0.9). 0.7 (3.3 frames, 0.13 s) keeps most of the gain with little lag.

Memory: decode, model and encode hold a bounded number of chunks; the commands tune glibc
(see `tune_memory`) so that freed frame buffers go back to the system.

Sample clips: `python -m pix2pix_jax.video make-sample OUT.mp4 [--photos ...]` renders a
pan/zoom over still photos (the embedded samples by default) with a sine-plus-noise soundtrack.
"""

import argparse
import ctypes
import dataclasses
import fractions
import glob
import json
import os
import queue
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import decord
import numpy as np

from pix2pix_jax import inference, media, metrics

DEFAULT_CHUNK_TIMEOUT = 120.0  # seconds a single chunk may take to decode
DEFAULT_REOPEN_EVERY = 0  # chunks between reader re-opens; 0: never (see the docstring)
_QUEUE_CHUNKS = 2
# libx264/libx265 preset. On 2 CPU cores the encoder shares the cores with the model: "medium"
# gave end-to-end 0.87-0.90 of model-only frames/s, "veryfast" 0.89-0.95 (quickstart model,
# 320x240, CRF 18: larger files at about the same quality).
DEFAULT_PRESET = "veryfast"
DEFAULT_SMOOTHING = 0.7  # chosen by measurement, see the module docstring
# Output-container -> audio codec used when the source's audio cannot be copied.
_AUDIO_FALLBACK = {".webm": "libopus", ".ogv": "libvorbis"}
_WEBM_CODECS = ("libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1")
CODECS = {
  "h264": "libx264",
  "h265": "libx265",
  "hevc": "libx265",
  "vp8": "libvpx",
  "vp9": "libvpx-vp9",
  "av1": "libaom-av1",
  "mpeg4": "mpeg4",
  "mjpeg": "mjpeg",
}
_DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx": 10, "libvpx-vp9": 24, "libaom-av1": 28}


@dataclasses.dataclass
class EncodeOptions:
  """How the output video is encoded. codec "auto": H.264, or VP9 for WebM."""

  codec: str = "auto"
  crf: int | None = None  # None: the codec's default above
  preset: str = DEFAULT_PRESET  # libx264/libx265 only
  pix_fmt: str = "yuv420p"


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
  decoder: str = "decord"
  consistency_in: float | None = None  # mean temporal consistency of the source frames
  consistency_out: float | None = None  # ... and of the colourised frames

  def summary(self) -> str:
    text = (
      f"{self.src} -> {self.dst}: {self.frames} frames {self.width}x{self.height} "
      f"@ {self.fps:.3f} fps, audio {self.audio}, {self.frames / max(self.seconds, 1e-9):.1f} "
      f"frames/s"
    )
    if self.consistency_out is not None:
      text += (
        f", temporal consistency {self.consistency_out:.4f} (source {self.consistency_in:.4f})"
      )
    return text


# ---------------------------------------------------------------------------------------------
# Reading


def open_reader(path: str) -> decord.VideoReader:
  """decord reader on the CPU; MediaError for anything it cannot open or that has no frames."""
  try:
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
  except (decord.DECORDError, RuntimeError) as e:
    raise media.MediaError(f"{path}: cannot decode video ({_decord_message(e)})") from e
  if len(reader) == 0:
    raise media.MediaError(f"{path}: video has no frames")
  return reader


def _decord_message(e: Exception) -> str:
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  for line in lines:
    if "ERROR" in line or "Error" in line:
      return line.split("ERROR", 1)[-1].strip(" :") or line
  return lines[0] if lines else type(e).__name__


def average_fps(reader: decord.VideoReader) -> fractions.Fraction:
  """The average frame rate as a fraction (29.97 -> 30000/1001)."""
  fps = reader.get_avg_fps()
  if not fps or not np.isfinite(fps) or fps <= 0:
    fps = 25.0
  return fractions.Fraction(fps).limit_denominator(1001)


def is_variable_rate(reader: decord.VideoReader) -> bool:
  starts = reader.get_frame_timestamp(range(len(reader)))[:, 0]
  if len(starts) < 3:
    return False
  steps = np.diff(starts)
  return bool(steps.max() - steps.min() > 1e-3)


def _read_chunk(reader: decord.VideoReader, indices: list[int]) -> tuple[np.ndarray | None, bool]:
  """(frames, ended). If get_batch fails, decodes frame by frame; the clip ends at the first
  frame that fails (decord's frame count can over-report)."""
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
  path: str, chunk_size: int, reopen_every: int, reader: decord.VideoReader | None
) -> Iterator[np.ndarray]:
  reader = reader or open_reader(path)
  total = len(reader)
  for k, start in enumerate(range(0, total, chunk_size)):
    if k and reopen_every and k % reopen_every == 0:
      del reader
      reader = open_reader(path)
    frames, ended = _read_chunk(reader, list(range(start, min(start + chunk_size, total))))
    if frames is None and start == 0:
      raise media.MediaError(f"{path}: cannot decode any frame (truncated or corrupt?)")
    if frames is not None:
      yield frames
    if ended:
      return


def _ffmpeg_command(path: str, frames: int | None = None) -> list[str]:
  limit = ["-frames:v", str(frames)] if frames else []
  return [
    media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-noautorotate", "-i", path,
    "-map", "0:v:0", *limit, "-f", "rawvideo", "-pix_fmt", "rgb24", "-fps_mode", "passthrough",
    "pipe:1",
  ]  # fmt: skip


def _ffmpeg_chunks(path: str, chunk_size: int, width: int, height: int) -> Iterator[np.ndarray]:
  """Frames piped out of ffmpeg: the fallback where decord misreads a stream."""
  frame_bytes = width * height * 3
  with tempfile.TemporaryFile() as log:
    proc = subprocess.Popen(_ffmpeg_command(path), stdout=subprocess.PIPE, stderr=log)
    count = 0
    try:
      while True:
        data = proc.stdout.read(frame_bytes * chunk_size)
        n = len(data) // frame_bytes
        if n:
          count += n
          yield np.frombuffer(data[: n * frame_bytes], np.uint8).reshape(n, height, width, 3)
        if len(data) < frame_bytes * chunk_size:
          break
    finally:
      proc.kill()
      proc.wait()
    if count == 0:
      log.seek(0)
      cause = media.last_line(log.read().decode(errors="replace"))
      raise media.MediaError(f"{path}: cannot decode any frame ({cause})")


def first_frame_ffmpeg(path: str, width: int, height: int) -> np.ndarray | None:
  proc = subprocess.run(_ffmpeg_command(path, 1), capture_output=True, check=False)
  if len(proc.stdout) != width * height * 3:
    return None
  return np.frombuffer(proc.stdout, np.uint8).reshape(height, width, 3)


# The most decoded RGB a clip may amount to for decord to read it (see the module docstring).
DECORD_MAX_DECODED_BYTES = 512 << 20


def choose_backend(path: str, info: media.VideoInfo) -> tuple[str, decord.VideoReader | None]:
  """("decord", reader) where the clip's decoded frames fit DECORD_MAX_DECODED_BYTES and decord
  decodes the first frame as ffmpeg does, else ("ffmpeg", None). decord misreads some streams
  (VP8 in WebM, full-range MJPEG, odd-sized VP9) and fails to open some damaged files that
  ffmpeg still decodes."""
  try:
    reader = open_reader(path)
  except media.MediaError:
    if first_frame_ffmpeg(path, info.width, info.height) is None:
      raise
    return "ffmpeg", None
  if len(reader) * info.width * info.height * 3 > DECORD_MAX_DECODED_BYTES:
    return "ffmpeg", None
  reference = first_frame_ffmpeg(path, info.width, info.height)
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
  reader: decord.VideoReader | None = None,
  backend: str = "decord",
  size: tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
  """uint8 [n<=chunk_size, H, W, 3] chunks in order, decoded on a background thread.

  backend "decord" (VideoReader.get_batch) or "ffmpeg" (raw frames from a pipe; needs
  size=(width, height)). The queue holds at most a couple of chunks; a chunk that takes longer
  than `timeout` raises MediaError (decord can hang on some files).
  """
  if backend == "decord":
    source = _decord_chunks(path, chunk_size, reopen_every, reader)
    reader = None  # owned by `source` now, which closes it when it re-opens the file
  else:
    source = _ffmpeg_chunks(path, chunk_size, *size)
  chunks: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
  stop = threading.Event()
  done = object()

  def put(item: Any) -> bool:
    while not stop.is_set():
      try:
        chunks.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def work() -> None:
    try:
      for frames in source:
        if not put(frames):
          source.close()
          return
      put(done)
    except Exception as e:  # handed to the consumer, which raises it
      put(e)

  thread = threading.Thread(target=work, name=f"decode {os.path.basename(path)}", daemon=True)
  thread.start()
  try:
    while True:
      try:
        item = chunks.get(timeout=timeout)
      except queue.Empty:
        raise media.MediaError(f"{path}: decoder stalled for {timeout:.0f} s") from None
      if item is done:
        return
      if isinstance(item, Exception):
        raise item
      yield item
  finally:
    stop.set()
    thread.join(timeout=1.0)


# ---------------------------------------------------------------------------------------------
# Writing


def resolve_codec(options: EncodeOptions, dst: str) -> str:
  ext = os.path.splitext(dst)[1].lower()
  if options.codec == "auto":
    return "libvpx-vp9" if ext == ".webm" else "libx264"
  codec = CODECS.get(options.codec, options.codec)
  if ext == ".webm" and codec not in _WEBM_CODECS:
    raise media.MediaError(f"{dst}: a .webm file cannot hold {options.codec} (use vp8, vp9 or av1)")
  return codec


def encoder_args(options: EncodeOptions, dst: str, width: int, height: int) -> list[str]:
  """ffmpeg output options for the video stream."""
  codec = resolve_codec(options, dst)
  pix_fmt = options.pix_fmt
  if codec in ("libx264", "libx265") and pix_fmt == "yuv420p" and (width % 2 or height % 2):
    pix_fmt = "yuv444p"  # 4:2:0 H.264/H.265 cannot code odd sizes; keep the size exact
  if codec == "mjpeg" and pix_fmt == "yuv420p":
    pix_fmt = "yuvj420p"
  args = ["-c:v", codec, "-pix_fmt", pix_fmt]
  crf = options.crf if options.crf is not None else _DEFAULT_CRF.get(codec)
  if codec in ("libx264", "libx265"):
    args += ["-crf", str(crf), "-preset", options.preset]
  elif codec in ("libvpx", "libvpx-vp9", "libaom-av1"):
    args += ["-crf", str(crf), "-b:v", "0" if codec != "libvpx" else "10M"]
  elif codec in ("mpeg4", "mjpeg"):
    args += ["-q:v", str(options.crf if options.crf is not None else 3)]
  elif crf is not None:
    args += ["-crf", str(crf)]
  # Tag the matrix swscale uses for RGB -> YUV, so players convert back with the same one.
  if pix_fmt.startswith("yuv"):
    args += ["-colorspace", "smpte170m"]
  if os.path.splitext(dst)[1].lower() in (".mp4", ".m4v", ".mov"):
    args += ["-movflags", "+faststart"]
  return args


ENCODER_NICENESS = 10


def _lower_priority(cmd: list[str]) -> list[str]:
  """`cmd` run under `nice`, where there is one: the encoder then uses the CPU time the model
  leaves instead of stalling the model's threads, which matters where the model runs on the
  same CPU cores; where CPU is not scarce it changes nothing."""
  nice = shutil.which("nice")
  return [nice, "-n", str(ENCODER_NICENESS), *cmd] if nice else cmd


class FrameWriter:
  """ffmpeg reading raw RGB frames from a pipe, fed by a writer thread from a bounded queue."""

  def __init__(
    self,
    path: str,
    width: int,
    height: int,
    fps: fractions.Fraction,
    options: EncodeOptions,
    *,
    output_format: str | None = None,
  ):
    self.path = path
    self._log = tempfile.TemporaryFile()
    fmt = ["-f", output_format] if output_format else []
    cmd = [
      media.ffmpeg_exe(),
      "-hide_banner",
      "-nostdin",
      "-loglevel",
      "error",
      "-y",
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "-s",
      f"{width}x{height}",
      "-framerate",
      f"{fps.numerator}/{fps.denominator}",
      "-i",
      "pipe:0",
      "-an",
      *encoder_args(options, path, width, height),
      *fmt,
      path,
    ]
    self._proc = subprocess.Popen(_lower_priority(cmd), stdin=subprocess.PIPE, stderr=self._log)
    self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
    self._error: BaseException | None = None
    self._thread = threading.Thread(target=self._work, name="encode", daemon=True)
    self._thread.start()

  def _work(self) -> None:
    while True:
      frames = self._queue.get()
      if frames is None:
        return
      if self._error is not None:
        continue  # drain, so put() never blocks forever
      try:
        self._proc.stdin.write(memoryview(np.ascontiguousarray(frames)).cast("B"))
      except (BrokenPipeError, OSError) as e:
        self._error = e

  def write(self, frames: np.ndarray) -> None:
    """Queues uint8 [n, H, W, 3] frames; raises if ffmpeg has already failed."""
    if self._error is not None:
      self._fail()
    self._queue.put(frames)

  def close(self) -> None:
    """Waits for ffmpeg to finish; MediaError with ffmpeg's message if it failed."""
    self._queue.put(None)
    self._thread.join()
    try:
      self._proc.stdin.close()
    except OSError as e:
      self._error = self._error or e
    code = self._proc.wait()
    if code or self._error is not None:
      self._fail()
    self._log.close()

  def abort(self) -> None:
    """Stops ffmpeg without waiting for the queue (error path)."""
    self._error = self._error or RuntimeError("aborted")
    self._proc.kill()
    with_timeout_put(self._queue, None)
    self._thread.join(timeout=5.0)
    self._proc.wait()
    self._log.close()

  def _fail(self) -> None:
    self._proc.kill()
    self._proc.wait()
    self._log.seek(0)
    message = self._log.read().decode(errors="replace")
    raise media.MediaError(f"{self.path}: cannot encode output ({_ffmpeg_cause(message)})")


def with_timeout_put(q: queue.Queue, item: Any) -> None:
  try:
    q.put(item, timeout=1.0)
  except queue.Full:
    pass


def _ffmpeg_cause(stderr: str) -> str:
  if "No space left on device" in stderr:
    return "no space left on device"
  return media.last_line(stderr)


def mux_audio(video: str, src: str, dst: str) -> str:
  """Video stream of `video` + the audio streams of `src` -> `dst`; returns how audio went.

  Copies the audio; if the container refuses the codec, re-encodes it.
  """
  ext = os.path.splitext(dst)[1].lower()
  base = [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
  base += ["-i", video, "-i", src, "-map", "0:v:0", "-map", "1:a?", "-c:v", "copy"]
  tail = ["-movflags", "+faststart"] if ext in (".mp4", ".m4v", ".mov") else []
  proc = subprocess.run(
    base + ["-c:a", "copy", *tail, dst], capture_output=True, text=True, errors="replace"
  )
  if proc.returncode == 0:
    return "copied"
  codec = _AUDIO_FALLBACK.get(ext, "aac")
  proc = subprocess.run(
    base + ["-c:a", codec, *tail, dst], capture_output=True, text=True, errors="replace"
  )
  if proc.returncode:
    raise media.MediaError(f"{dst}: cannot add the audio ({_ffmpeg_cause(proc.stderr)})")
  return f"re-encoded ({codec})"


# ---------------------------------------------------------------------------------------------
# Progress


class Progress:
  """A one-line progress bar on stderr: frames, fps and ETA."""

  def __init__(self, name: str, total: int, *, stream: Any = None, enabled: bool = True):
    self.name, self.total, self.done = name, total, 0
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self.start = self._last = time.perf_counter()
    self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

  def update(self, n: int) -> None:
    self.done += n
    now = time.perf_counter()
    interval = 0.2 if self._tty else 5.0
    if self.enabled and (now - self._last >= interval or self.done >= self.total):
      self._last = now
      self._print(now)

  def _print(self, now: float) -> None:
    elapsed = now - self.start
    rate = self.done / elapsed if elapsed > 0 else 0.0
    left = max(self.total - self.done, 0) / rate if rate > 0 else float("inf")
    width = 24
    filled = int(width * min(self.done / max(self.total, 1), 1.0))
    bar = "#" * filled + "-" * (width - filled)
    eta = time.strftime("%H:%M:%S", time.gmtime(left)) if np.isfinite(left) else "--:--:--"
    line = f"{self.name} [{bar}] {self.done}/{self.total} frames {rate:.1f} fps ETA {eta}"
    self.stream.write(("\r" + line) if self._tty else (line + "\n"))
    self.stream.flush()

  def close(self) -> None:
    if self.enabled and self._tty:
      self.stream.write("\n")
      self.stream.flush()


# ---------------------------------------------------------------------------------------------
# Colourising a video


def _small(frames: np.ndarray, max_side: int = 96) -> np.ndarray:
  """Strided downsampling for the consistency figure (colour distributions barely change)."""
  step = max(1, int(np.ceil(max(frames.shape[1:3]) / max_side)))
  return frames[:, ::step, ::step]


class _Consistency:
  """Running mean of metrics.temporal_consistency over a stream of chunks."""

  def __init__(self):
    self.total, self.count, self._last = 0.0, 0, None

  def add(self, frames: np.ndarray) -> None:
    small = _small(frames)
    if self._last is not None:
      small = np.concatenate([self._last, small], axis=0)
    self._last = small[-1:]
    if len(small) > 1:
      values = np.asarray(metrics.temporal_consistency(small.astype(np.float32) / 255.0))
      self.total += float(values.sum())
      self.count += len(values)

  @property
  def mean(self) -> float | None:
    return self.total / self.count if self.count else None


def colorize_video(
  colorizer: inference.Colorizer,
  src: str,
  dst: str,
  *,
  overwrite: bool = False,
  encode: EncodeOptions | None = None,
  smoothing: float = DEFAULT_SMOOTHING,
  cut_threshold: float = inference.DEFAULT_CUT_THRESHOLD,
  consistency: bool = False,
  progress: bool = True,
  timeout: float = DEFAULT_CHUNK_TIMEOUT,
  reopen_every: int = DEFAULT_REOPEN_EVERY,
) -> VideoResult:
  """Colourises `src` into `dst` (written atomically); see the module docstring.

  smoothing: 0 (off) .. <1, the weight of the previous frame's chroma in the moving average.
  consistency: also measure the temporal consistency of the source and output frames.
  """
  encode = encode or EncodeOptions()
  start = time.perf_counter()
  _release_freed_memory()
  info = media.probe(src)
  resolve_codec(encode, dst)  # fail early on an impossible codec/container pair
  backend, reader = choose_backend(src, info)
  if reader is not None:
    total, fps = len(reader), average_fps(reader)
    # iter_chunks takes the only reference, so that a re-open frees the old reader.
    reader = [reader]
  else:
    fps = fractions.Fraction(info.fps or 25.0).limit_denominator(1001)
    total = int(round((info.duration or 0.0) * float(fps)))
  state = colorizer.initial_state() if smoothing > 0 else None
  bar = Progress(os.path.basename(src), total, enabled=progress)
  measure_in = _Consistency() if consistency else None
  measure_out = _Consistency() if consistency else None
  frames_done, cuts, width, height = 0, 0, info.width, info.height
  audio = "none"
  with media.atomic_output(dst, overwrite=overwrite) as tmp:
    video_tmp = media.sibling_temp(dst, "video") if info.audio_codec else tmp
    writer = None
    try:
      pending = None
      chunks = iter_chunks(
        src,
        colorizer.batch_size,
        timeout=timeout,
        reopen_every=reopen_every,
        reader=reader.pop() if reader else None,
        backend=backend,
        size=(info.width, info.height),
      )
      for k, frames in enumerate(chunks):
        if writer is None:
          height, width = frames.shape[1:3]
          writer = FrameWriter(video_tmp, width, height, fps, encode)
        out, state, cut_flags = colorizer.colorize_batch(
          frames, state=state, strength=smoothing, cut_threshold=cut_threshold
        )
        if measure_in is not None:
          measure_in.add(frames)
        if pending is not None:
          frames_done, cuts = _flush(pending, writer, measure_out, bar, frames_done, cuts)
        # Read back one batch late, so that the next batch is queued before this one finishes.
        pending = (out, len(frames), cut_flags)
        if k % 16 == 15:
          _release_freed_memory()
      if pending is not None:
        frames_done, cuts = _flush(pending, writer, measure_out, bar, frames_done, cuts)
      if writer is None:
        raise media.MediaError(f"{src}: video has no frames")
      writer.close()
      writer = None
      if info.audio_codec:
        audio = mux_audio(video_tmp, src, tmp)
    except BaseException:
      if writer is not None:
        writer.abort()
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
    audio=audio,
    scene_cuts=max(cuts - 1, 0),  # the clip's first frame "starts a shot"; it is not a cut
    decoder=backend,
    consistency_in=measure_in.mean if measure_in else None,
    consistency_out=measure_out.mean if measure_out else None,
  )


def _load_libc() -> Any:
  try:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc only)
    return libc
  except (OSError, AttributeError):
    return None


_LIBC = _load_libc()
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's malloc.h


def tune_memory() -> None:
  """Keeps RSS bounded under glibc (no-op elsewhere); call it at program start, before XLA
  starts its threads, as the colourising commands do. It only changes where malloc gets memory.

  Frames, model inputs and outputs (megabytes each) are allocated and freed on different
  threads (reader, XLA's pool, main, writer). With glibc's defaults each thread gets its own
  arena that keeps what it freed, and the mmap threshold rises after the first big free, so
  more big buffers come from fragmenting heaps. At most two arenas and a fixed 32 MiB mmap
  threshold: peak RSS 823-849 MB instead of 897-907 MB over a 5000-frame 320x240 clip
  (quickstart model, two runs each), at the same speed. (An earlier measurement here, 837 MB
  at 100 frames growing to 1248 MB at 5000, was mostly decord's read-ahead; see the module
  docstring.) The trim threshold is raised because fixing the mmap threshold also pins it at
  128 KiB, which returned and re-faulted XLA's buffers on every call and halved the model's
  throughput (`colorize_video` trims explicitly).
  """
  if _LIBC is not None:
    _LIBC.mallopt(_M_ARENA_MAX, 2)
    _LIBC.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    _LIBC.mallopt(_M_TRIM_THRESHOLD, 512 << 20)


def _release_freed_memory() -> None:
  """Returns the free pages glibc's heaps hold to the system (malloc_trim)."""
  if _LIBC is not None:
    _LIBC.malloc_trim(0)


def _flush(
  pending: tuple[Any, int, Any],
  writer: FrameWriter,
  measure: Any,
  bar: Progress,
  frames_done: int,
  cuts: int,
) -> tuple[int, int]:
  """Writes a colourised batch; returns the frame and scene-cut counts with it added."""
  out, n, cut_flags = pending
  frames = np.asarray(out)[:n]
  writer.write(frames)
  if measure is not None:
    measure.add(frames)
  bar.update(n)
  if cut_flags is not None:
    cuts += int(np.asarray(cut_flags)[:n].sum())
  return frames_done + n, cuts


# ---------------------------------------------------------------------------------------------
# Pieces to time (used by the benchmark)


def peak_rss_mb() -> float:
  """Peak resident memory of this process (since start or the last `reset_peak_rss`), MiB."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
  """Resets the kernel's peak-RSS counter (Linux); returns whether it could."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def time_decode(path: str, chunk_size: int = 8) -> dict[str, float]:
  """Decode only, through the same reader thread as colourising."""
  start = time.perf_counter()
  frames = sum(len(c) for c in iter_chunks(path, chunk_size))
  seconds = time.perf_counter() - start
  return {"frames": frames, "seconds": seconds, "fps": frames / seconds}


def time_model(
  colorizer: inference.Colorizer,
  height: int,
  width: int,
  batches: int = 4,
  smoothing: float = DEFAULT_SMOOTHING,
) -> dict[str, float]:
  """Colorizer only (prepare, generator, smoothing as `colorize_video` does it, compose) on
  random frames, after one warm-up batch."""
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (colorizer.batch_size, height, width, 3), dtype=np.uint8)
  state = colorizer.initial_state() if smoothing > 0 else None

  def one():
    nonlocal state
    out, state, _ = colorizer.colorize_batch(frames, state=state, strength=smoothing)
    return np.asarray(out)

  one()
  start = time.perf_counter()
  for _ in range(batches):
    one()
  seconds = time.perf_counter() - start
  n = batches * colorizer.batch_size
  return {"frames": n, "seconds": seconds, "fps": n / seconds}


def time_encode(
  height: int,
  width: int,
  frames: int = 100,
  fps: float = 25.0,
  options: EncodeOptions | None = None,
) -> dict[str, float]:
  """Encode only: synthetic frames piped through FrameWriter into a temporary file."""
  rng = np.random.default_rng(0)
  base = rng.integers(0, 256, (8, height, width, 3), dtype=np.uint8)
  with tempfile.TemporaryDirectory() as tmp:
    writer = FrameWriter(
      os.path.join(tmp, "out.mp4"),
      width,
      height,
      fractions.Fraction(fps).limit_denominator(1001),
      options or EncodeOptions(),
    )
    start = time.perf_counter()
    for i in range(0, frames, len(base)):
      writer.write(np.roll(base, i, axis=2)[: min(len(base), frames - i)])
    writer.close()
    seconds = time.perf_counter() - start
  return {"frames": frames, "seconds": seconds, "fps": frames / seconds}


def time_end_to_end(
  colorizer: inference.Colorizer, src: str, *, reset_peak: bool = True, **kwargs: Any
) -> dict[str, float]:
  """The whole colourisation of `src` into a temporary file, with the peak RSS it reached
  (since the start of the process where reset_peak is False)."""
  if reset_peak:
    reset_peak_rss()
  with tempfile.TemporaryDirectory() as tmp:
    dst = os.path.join(tmp, "out" + os.path.splitext(src)[1])
    result = colorize_video(colorizer, src, dst, progress=False, **kwargs)
  return {
    "frames": result.frames,
    "seconds": result.seconds,
    "fps": result.frames / result.seconds,
    "peak_rss_mb": peak_rss_mb(),
  }


# ---------------------------------------------------------------------------------------------
# Sample clips


def sample_photos() -> list[str]:
  """The embedded sample photographs, sorted."""
  root = os.path.join(os.path.dirname(__file__), "data", "samples")
  return sorted(glob.glob(os.path.join(root, "**", "*.jpg"), recursive=True))


def make_sample_clip(
  out_path: str,
  photos: list[str] | None = None,
  seconds: float = 6.0,
  fps: float = 25.0,
  size: int | tuple[int, int] = (320, 240),
  audio: bool = True,
  *,
  codec: str | None = None,
  pix_fmt: str = "yuv420p",
) -> str:
  """Renders a pan/zoom over still photos (hard cuts between them) with ffmpeg.

  Each photo gets an equal share of `seconds`; the soundtrack is a 440 Hz sine plus pink
  noise. size: (width, height) or a square side. The codec follows the extension unless given.
  """
  photos = list(photos) if photos else sample_photos()[:3]
  if not photos:
    raise ValueError("no photos given and no embedded samples found")
  width, height = (size, size) if isinstance(size, int) else size
  total = max(1, int(round(seconds * fps)))
  per = [total // len(photos) + (i < total % len(photos)) for i in range(len(photos))]
  photos, per = [p for p, n in zip(photos, per, strict=True) if n], [n for n in per if n]
  cmd = [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
  for photo in photos:
    cmd += ["-i", photo]
  graph = []
  for i, n in enumerate(per):
    # Upscale first so that zoompan's integer crop offsets move smoothly.
    graph.append(
      f"[{i}:v]scale={width * 4}:{height * 4}:force_original_aspect_ratio=increase,"
      f"crop={width * 4}:{height * 4},setsar=1,"
      f"zoompan=z='1+0.3*on/{max(n - 1, 1)}':x='(iw-iw/zoom)*on/{max(n - 1, 1)}':"
      f"y='(ih-ih/zoom)/2':d={n}:s={width}x{height}:fps={fps},setsar=1[v{i}]"
    )
  inputs = "".join(f"[v{i}]" for i in range(len(per)))
  graph.append(f"{inputs}concat=n={len(per)}:v=1:a=0,format={pix_fmt}[v]")
  maps = ["-map", "[v]"]
  duration = total / fps
  if audio:
    cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}"]
    cmd += ["-f", "lavfi", "-i", f"anoisesrc=color=pink:amplitude=0.05:duration={duration}"]
    a, b = len(photos), len(photos) + 1
    graph.append(f"[{a}:a][{b}:a]amix=inputs=2:duration=shortest[a]")
    maps += ["-map", "[a]"]
  ext = os.path.splitext(out_path)[1].lower()
  vcodec = codec or ("libvpx-vp9" if ext == ".webm" else "libx264")
  cmd += ["-filter_complex", ";".join(graph), *maps, "-c:v", vcodec, "-frames:v", str(total)]
  if audio:
    cmd += ["-c:a", "libopus" if ext == ".webm" else "aac"]
  cmd += [out_path]
  proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
  if proc.returncode:
    raise media.MediaError(f"{out_path}: ffmpeg failed ({media.last_line(proc.stderr)})")
  return out_path


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m pix2pix_jax.video", description=__doc__)
  sub = parser.add_subparsers(dest="command", required=True)
  sample = sub.add_parser("make-sample", help="render a pan/zoom clip over still photos")
  sample.add_argument("output")
  sample.add_argument("--photos", nargs="*", default=None)
  sample.add_argument("--seconds", type=float, default=6.0)
  sample.add_argument("--fps", type=float, default=25.0)
  sample.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
  sample.add_argument("--no-audio", action="store_true")
  sample.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
  args = parser.parse_args(argv)
  if args.command == "make-sample":
    width, height = (int(v) for v in args.size.lower().split("x"))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with media.atomic_output(args.output, overwrite=args.overwrite) as tmp:
      make_sample_clip(tmp, args.photos, args.seconds, args.fps, (width, height), not args.no_audio)
    print(json.dumps({"output": args.output, "frames": int(round(args.seconds * args.fps))}))
  return 0


def run() -> None:
  """Command-line entry point: exits with main()'s status, one line for a MediaError."""
  try:
    sys.exit(main())
  except media.MediaError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  run()
