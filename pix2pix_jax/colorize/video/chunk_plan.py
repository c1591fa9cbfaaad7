"""Planning a chunked run: how many workers, how long a chunk, which frames each chunk holds,
and decoding one chunk's frames.

Split: the clip's frames are cut into chunks of `--chunk-seconds` (frame ranges [a, b)). A chunk
is decoded on its own: by frame index with decord where the serial path would read the clip with
decord, else by the ffmpeg pipe seeking to the midpoint between frames a-1 and a and reading up
to the midpoint between frames b-1 and b (`-ss`/`-t` on the input: ffmpeg's accurate seek trims
by timestamp, and a midpoint is half a frame away from every frame, so each frame lands in
exactly one chunk; every chunk's frame count is checked against the plan). The frame times
come from the demuxer's packet list (no decoding). Containers whose seeking is not frame exact
(MPEG-TS/PS, FLV, AVI, ...: byte-position seeks that land inside a GOP, or no presentation
times) are colourised serially.

Head and body: with temporal smoothing, a chunk's first `head_frames` frames (its head) depend on
the smoothing state at the end of the chunk before it. A chunk runs the model over all its
frames at once, smoothing from a fresh state; its body (the frames after the head) is composed
and encoded at once, its head only when the previous chunk's end state is known (see
chunk_worker.py). The body starts from a state that has seen the head's `warmup_frames(s)`
frames: ceil(log(1/1024) / log(s)) (20 at the default 0.7, rounded up to whole batches), after
which it differs from the serial run's by at most s^W <= 1/1024 of the chroma range, below 1/255
of a pixel value. A scene cut inside the head resets both runs alike.

Default --workers (`default_workers`): min(by cores, by memory), at least 1, at most 16:
  by cores: usable cores // 2 where the model runs on an accelerator (a pipeline keeps about two
    cores busy: the decoder and the encoder), but at least one per accelerator; cores // 4 where
    the model runs on the CPU too (it needs the cores as well);
  by memory: half the available memory (MemAvailable, or a lower cgroup limit) over one
    pipeline's frames in flight (`pipeline_bytes`).
"""

import contextlib
import dataclasses
import fractions
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator

import jax
import numpy as np

from pix2pix_jax import files
from pix2pix_jax.colorize.video import pipeline, probe, reader

# Default chunk length: DURATION / TARGET_CHUNKS, within these bounds. Short enough that a clip
# has a few chunks per worker (a kill loses the N chunks in progress, about N / 2 chunks' work:
# 48 chunks keep that under a sixth of the clip up to 16 workers), long enough that a chunk's
# fixed costs (two ffmpeg starts, the seek's decode from the keyframe before it, two encoders)
# stay small. It does not depend on --workers, so a rerun with other workers plans the same
# chunks and reuses them.
DEFAULT_CHUNK_SECONDS = 60.0
MIN_DEFAULT_CHUNK_SECONDS = 5.0
TARGET_CHUNKS = 48
MAX_DEFAULT_WORKERS = 16
# Containers with an index and presentation timestamps that ffmpeg seeks in by timestamp,
# landing on a keyframe before it. Not AVI: its MPEG-4 packets carry no presentation times
# (a chunk of such a clip decoded a frame short of its plan, so it ran in one piece).
SEEKABLE_EXTENSIONS = (".mp4", ".m4v", ".mov", ".3gp", ".mkv", ".webm")


class CannotSplit(Exception):
  """The clip cannot be split frame exactly; it is colourised serially instead."""


# ---------------------------------------------------------------------------------------------
# How many workers, how long a chunk


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


def warmup_frames(smoothing: float) -> int:
  """Frames after which a fresh smoothing state is within 1/1024 of any other (module doc)."""
  if smoothing <= 0:
    return 0
  return math.ceil(math.log(1 / 1024) / math.log(smoothing))


def head_frames(smoothing: float, batch_size: int) -> int:
  """A chunk's head: `warmup_frames` rounded up to whole batches."""
  return -(-warmup_frames(smoothing) // batch_size) * batch_size


def pipeline_bytes(
  width: int, height: int, batch_size: int, smoothing: float = pipeline.DEFAULT_SMOOTHING
) -> int:
  """About what one decode -> colourise -> encode pipeline holds: ~12 batches of RGB frames
  (decode queue, host and device copies, float intermediates, the encode queue), ~40 frames
  for the decoder's references and the encoder's look-ahead, the head's lightness (float32)
  until it is composed, and 64 MiB."""
  pixels = width * height
  held = 4 * pixels * head_frames(smoothing, batch_size)
  return 3 * pixels * (12 * batch_size + 40) + held + (64 << 20)


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
  cores = reader.usable_cores() if cores is None else cores
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


# ---------------------------------------------------------------------------------------------
# The plan


@dataclasses.dataclass(frozen=True)
class Chunk:
  index: int
  start: int  # first frame
  body: int  # first frame of the body: [start, body) is the head, composed last
  end: int  # one past the last frame

  @property
  def frames(self) -> int:
    return self.end - self.start


def plan_chunks(total: int, chunk_frames: int, head: int) -> list[Chunk]:
  """Chunks of `chunk_frames` frames; each but the first has a head of `head` frames."""
  chunk_frames = max(1, chunk_frames)
  chunks = []
  for i, a in enumerate(range(0, total, chunk_frames)):
    end = min(a + chunk_frames, total)
    chunks.append(Chunk(i, a, min(a + head, end) if i else a, end))
  return chunks


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


# ---------------------------------------------------------------------------------------------
# Decoding one chunk


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
  cmd = reader._ffmpeg_command(source.path, source.info, threads=threads)
  i = cmd.index("-i")
  cmd[i:i] = seek
  with tempfile.TemporaryFile() as log:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
    try:
      yield from reader.raw_frames(proc.stdout, source.info.width, source.info.height, batch)
    finally:
      proc.kill()
      proc.wait()


def _decord_range(
  source: Source, first: int, end: int, batch: int, threads: int
) -> Iterator[np.ndarray]:
  """Frames [first, end) by index with decord."""
  decord_reader = reader.open_reader(source.path, threads)
  for a in range(first, end, batch):
    frames, ended = reader._read_chunk(decord_reader, list(range(a, min(a + batch, end))))
    if frames is not None:
      yield frames
    if ended:
      return
