"""Planning a chunked run: the default --workers and chunk length, and the frame ranges of
the chunks, each with the head that is smoothed from the chunk before it (docs/video.md)."""

import contextlib
import dataclasses

import jax

from pix2pix_jax.colorize.video import source, temporal

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


def pipeline_bytes(
  width: int, height: int, batch_size: int, smoothing: float = temporal.DEFAULT_SMOOTHING
) -> int:
  """About what one decode -> colourise -> encode pipeline holds: ~12 batches of RGB frames
  (decode queue, host and device copies, float intermediates, the encode queue), ~40 frames
  for the decoder's references and the encoder's look-ahead, the head's lightness (float32)
  until it is composed, and 64 MiB."""
  pixels = width * height
  held = 4 * pixels * temporal.head_frames(smoothing, batch_size)
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
  """The default --workers: min(by cores, by memory), 1 to 16. By cores: cores // 2 where the
  model runs on an accelerator (a pipeline keeps about two cores busy decoding and encoding), at
  least one per accelerator; cores // 4 where it runs on the CPU too. By memory: half the
  available memory over `pipeline_bytes`."""
  cores = source.usable_cores() if cores is None else cores
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
