"""glibc malloc settings that keep a streaming process's resident memory bounded (docs/video.md,
"Speed and memory"); elsewhere than glibc they do nothing."""

import ctypes
import functools
from typing import Any

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's malloc.h


@functools.cache
def _libc() -> Any:
  try:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc only)
    return libc
  except (OSError, AttributeError):
    return None


def tune_memory() -> None:
  """At most two arenas and a fixed 32 MiB mmap threshold. Call it at program start, before
  XLA starts its threads, as the colourising commands do; it only changes where malloc gets
  memory. The trim threshold is raised because fixing the mmap threshold also pins it at
  128 KiB, which returns and re-faults XLA's buffers on every call (`release_freed_memory`
  trims instead, between chunks)."""
  libc = _libc()
  if libc is not None:
    libc.mallopt(_M_ARENA_MAX, 2)
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(_M_TRIM_THRESHOLD, 512 << 20)


def release_freed_memory() -> None:
  """Returns the free pages glibc's heaps hold to the system (malloc_trim)."""
  libc = _libc()
  if libc is not None:
    libc.malloc_trim(0)
