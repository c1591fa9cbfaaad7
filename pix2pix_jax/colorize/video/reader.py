"""Decoding a clip into chunks of frames on a background thread, with decord or an ffmpeg pipe.

decord is imported here only, and only when a clip is read with it: where it cannot be imported,
every clip comes from the ffmpeg pipe. `choose_backend` also takes the pipe where decord misreads
a stream (VP8 in WebM, full-range MJPEG, odd-sized VP9: its first frame differs from ffmpeg's),
cannot open a file that ffmpeg still decodes (truncated MP4), or would hold too much: decord 0.6
decodes ahead of a slower consumer without bound (dmlc/decord#157, #208), so it reads only clips
whose decoded frames fit `DECORD_MAX_DECODED_BYTES`. The pipe's memory is bounded by the pipe.

The pipe decodes frames as they are displayed and in SDR: ffmpeg applies a display matrix
(rotation, flips: phone clips) itself, and PQ or HLG (HDR) streams are tone-mapped to BT.709 SDR
(`TONEMAP_FILTER`); decord does neither, so such clips always come from the pipe. Other 10-bit
streams are converted to 8-bit RGB with their own colour matrix.

A frame count that over-reports ends the clip at the first frame that fails to decode; a stalled
decoder raises after `timeout` seconds instead of hanging.
"""

import fractions
import os
import queue
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
# The most decoded RGB a clip may amount to for decord to read it (see the module docstring).
DECORD_MAX_DECODED_BYTES = 512 << 20
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


def open_reader(path: str) -> "decord.VideoReader":
  """decord reader on the CPU; MediaError for anything it cannot open or that has no frames."""
  decord = _decord()
  try:
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
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
  path: str, chunk_size: int, reopen_every: int, reader: "decord.VideoReader | None"
) -> Iterator[np.ndarray]:
  reader = reader or open_reader(path)
  total = len(reader)
  for k, start in enumerate(range(0, total, chunk_size)):
    if k and reopen_every and k % reopen_every == 0:
      del reader
      reader = open_reader(path)
    frames, ended = _read_chunk(reader, list(range(start, min(start + chunk_size, total))))
    if frames is None and start == 0:
      raise files.MediaError(f"{path}: cannot decode any frame (truncated or corrupt?)")
    if frames is not None:
      yield frames
    if ended:
      return


def _ffmpeg_command(path: str, info: probe.VideoInfo, frames: int | None = None) -> list[str]:
  """Raw RGB frames as displayed (ffmpeg autorotates), tone-mapped to SDR where HDR."""
  limit = ["-frames:v", str(frames)] if frames else []
  tonemap = ["-vf", TONEMAP_FILTER] if info.hdr else []
  return [
    probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", path,
    "-map", "0:v:0", *limit, *tonemap, "-f", "rawvideo", "-pix_fmt", "rgb24",
    "-fps_mode", "passthrough", "pipe:1",
  ]  # fmt: skip


def _ffmpeg_chunks(path: str, chunk_size: int, info: probe.VideoInfo) -> Iterator[np.ndarray]:
  """Frames piped out of ffmpeg."""
  width, height = info.width, info.height
  frame_bytes = width * height * 3
  with tempfile.TemporaryFile() as log:
    proc = subprocess.Popen(_ffmpeg_command(path, info), stdout=subprocess.PIPE, stderr=log)
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
      cause = probe.last_line(log.read().decode(errors="replace"))
      raise files.MediaError(f"{path}: cannot decode any frame ({cause})")


def first_frame_ffmpeg(path: str, info: probe.VideoInfo) -> np.ndarray | None:
  proc = subprocess.run(_ffmpeg_command(path, info, 1), capture_output=True, check=False)
  if len(proc.stdout) != info.width * info.height * 3:
    return None
  return np.frombuffer(proc.stdout, np.uint8).reshape(info.height, info.width, 3)


def choose_backend(path: str, info: probe.VideoInfo) -> tuple[str, "decord.VideoReader | None"]:
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
    reader = open_reader(path)
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
) -> Iterator[np.ndarray]:
  """uint8 [n<=chunk_size, H, W, 3] chunks in order, decoded on a background thread.

  backend "decord" (VideoReader.get_batch) or "ffmpeg" (raw frames from a pipe; needs the
  clip's `probe.probe` info: displayed size, HDR transfer). The queue holds at most a couple
  of chunks; a chunk that takes longer than `timeout` raises MediaError (decord can hang on
  some files).
  """
  if backend == "decord":
    source = _decord_chunks(path, chunk_size, reopen_every, reader)
    reader = None  # owned by `source` now, which closes it when it re-opens the file
  else:
    source = _ffmpeg_chunks(path, chunk_size, info or probe.probe(path))
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
        raise files.MediaError(f"{path}: decoder stalled for {timeout:.0f} s") from None
      if item is done:
        return
      if isinstance(item, Exception):
        raise item
      yield item
  finally:
    stop.set()
    thread.join(timeout=1.0)
