"""Exclusive lock files (`flock`) naming their holder: one writer per training workdir or output.

A second process is refused in one line naming the first (host, pid, since); a dead holder's lock
is taken over. Across hosts this needs a filesystem that gives flock to all its clients; see
docs/reliability.md.
"""

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator

from pix2pix_jax import files

log = logging.getLogger(__name__)

# What flock raises on a filesystem without it (some NFS mounts, FUSE, SMB).
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class OutputLockedError(files.MediaError):
  """Another live process is writing the output."""


def describe(owner: dict) -> str:
  """The holder named in a lock file, e.g. "pid 42 on host node7 (since 2026-12-01 16:00:36)"."""
  if not owner:
    return "another process"
  start = owner.get("since")
  start = start if isinstance(start, int | float) else 0  # a file edited by hand
  since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
  return f"pid {owner.get('pid')} on host {owner.get('host')} (since {since})"


def read_owner(fd: int) -> dict:
  """The holder a lock file names; {} if it names none (or is being written)."""
  line = os.pread(fd, 4096, 0).decode(errors="replace").partition("\n")[0]
  try:
    owner = json.loads(line or "{}")
  except ValueError:
    return {}
  return owner if isinstance(owner, dict) else {}


def _same_file(fd: int, path: str) -> bool:
  """Whether `path` still names the file open as `fd` (not removed or replaced by its holder)."""
  try:
    st = os.stat(path)
  except FileNotFoundError:
    return False
  mine = os.fstat(fd)
  return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _lock(fd: int, subject: str) -> bool:
  """Locks `fd` without waiting: True if locked, False if the filesystem has no flock;
  BlockingIOError if another open file (of a live process) holds it."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    if e.errno not in _UNSUPPORTED:  # BlockingIOError (EWOULDBLOCK) included
      raise
    log.warning("%s: the filesystem does not support locks (%s); not locked", subject, e.strerror)
    return False
  return True


def _acquire(path: str, subject: str, refusal: Callable[[str], Exception]) -> tuple[int, bool]:
  """Opens and locks the lock file at `path`: (fd, locked); refusal(holder) if a live process
  holds it. Retries when the file it opened was removed or replaced meanwhile (a holder removes
  it while still holding it, so a file no longer at `path` is not a lock)."""
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      try:
        locked = _lock(fd, subject)
      except BlockingIOError:
        if _same_file(fd, path):
          raise refusal(describe(read_owner(fd))) from None
      else:
        if not locked or _same_file(fd, path):
          return fd, locked
    except BaseException:
      os.close(fd)
      raise
    os.close(fd)  # a file no longer at `path`: try the one there now


def _claim(fd: int, path: str) -> None:
  """Writes this process as the holder, logging a dead holder it took over from."""
  previous = read_owner(fd)  # left only by a process that died holding the lock
  if previous:
    log.warning("took over %s from %s, which is no longer running", path, describe(previous))
  me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
  data = (me + "\n").encode()
  os.pwrite(fd, data, 0)  # one write: a reader sees the old or the new holder's line
  os.ftruncate(fd, len(data))


@contextlib.contextmanager
def exclusive(
  path: str, *, subject: str, refusal: Callable[[str], Exception], remove: bool
) -> Iterator[bool]:
  """Holds an exclusive flock on the lock file `path` for the body; yields whether it is locked.

  Raises refusal(holder) at once if a live process holds it (holder as from `describe`). A lock
  whose holder died is taken over: the kernel drops a flock when its process dies. Where the
  filesystem has no flock, warns (naming `subject`) and yields False. On exit the file is
  removed (`remove`, before the lock is released) or emptied.
  """
  fd, locked = _acquire(path, subject, refusal)
  try:
    if locked:
      _claim(fd, path)
    elif remove and os.fstat(fd).st_size == 0 and _same_file(fd, path):
      with contextlib.suppress(OSError):  # no lock to hold: leave no file behind
        os.remove(path)
    yield locked
  finally:
    try:
      if locked and remove and _same_file(fd, path):
        os.remove(path)  # while still locked, so that no one locks this file after us
      elif locked:
        os.ftruncate(fd, 0)  # a clean exit names no holder
    finally:
      os.close(fd)  # releases the lock (as the kernel does when the process dies)


def output_lock_path(dst: str) -> str:
  """The lock file of the output `dst`: hidden beside it, `.NAME.lock`."""
  folder, name = os.path.split(os.path.abspath(dst))
  return os.path.join(folder, f".{name}.lock")


@contextlib.contextmanager
def output_lock(dst: str) -> Iterator[None]:
  """Holds the output `dst` for the body (one writer per output, across processes and hosts).

  Raises OutputLockedError (a MediaError) at once naming the live process writing it; creates
  the output's folder. The lock file is removed when the body ends.
  """
  path = output_lock_path(dst)

  def refusal(holder: str) -> Exception:
    return OutputLockedError(
      f"{dst}: being written by {holder}; wait for it to finish or choose another output"
    )

  with contextlib.ExitStack() as stack:
    try:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      stack.enter_context(exclusive(path, subject=dst, refusal=refusal, remove=True))
    except OSError as e:
      raise files.MediaError(f"{dst}: cannot lock output ({files.describe_os_error(e)})") from e
    yield
