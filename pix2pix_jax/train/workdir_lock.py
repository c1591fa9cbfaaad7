"""One training run per workdir: an exclusive `flock` on `<workdir>/train.lock`.

The lock file holds the owner's host, pid and start time, so a second run can say who holds it.
The kernel releases a flock when its process dies (even on SIGKILL), so a lock left by a dead
run is simply taken over; the file itself stays (removing it would let two runs lock two
different files). Across hosts this holds where the filesystem implements flock for all its
clients (local disks; NFSv4 and NFSv3 with NLM, where Linux maps flock onto byte-range locks and a
dead client's lock goes when its lease expires; Lustre mounted with `-o flock`). Where flock is
not supported the run goes on with a warning. In a multi-process run only process 0 holds it;
every process learns whether it got it.
"""

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator

import jax
import numpy as np

from pix2pix_jax import errors

log = logging.getLogger(__name__)

LOCK_FILE = "train.lock"


class WorkdirLockedError(errors.UserError):
  """Another live run holds the workdir."""


def _owner(fd: int) -> dict:
  os.lseek(fd, 0, os.SEEK_SET)
  try:
    return json.loads(os.read(fd, 4096).decode() or "{}")
  except ValueError:
    return {}


def _describe(owner: dict) -> str:
  if not owner:
    return "another process"
  since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
  return f"pid {owner.get('pid')} on host {owner.get('host')} (since {since})"


def _lock(fd: int, workdir: str) -> bool:
  """Locks `fd` without waiting: True if locked, False if the filesystem has no flock;
  WorkdirLockedError naming the owner if a live process holds it."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    raise WorkdirLockedError(
      f"{workdir} is being trained by {_describe(_owner(fd))}; wait for it to finish, stop it, "
      "or use another --workdir"
    ) from None
  except OSError as e:
    if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
      raise
    log.warning("%s: the filesystem does not support locks (%s); not locked", workdir, e.strerror)
    return False
  return True


@contextlib.contextmanager
def _flock(workdir: str) -> Iterator[None]:
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    locked = _lock(fd, workdir)
    if locked:
      previous = _owner(fd)  # left only by a run that died holding the lock
      if previous:
        log.warning("took over %s from %s, which is no longer running", path, _describe(previous))
      me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
      os.ftruncate(fd, 0)
      os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    yield
    if locked:
      os.ftruncate(fd, 0)  # a clean exit leaves no owner behind
  finally:
    os.close(fd)  # releases the lock (as the kernel does when the process dies)


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds the workdir for the body; raises WorkdirLockedError at once if a live run has it.

  With several processes, process 0 takes the lock and tells the others whether it did
  (a collective: every process must call this).
  """
  if jax.process_count() == 1:
    with _flock(workdir):
      yield
    return
  from jax.experimental import multihost_utils

  with contextlib.ExitStack() as stack:
    error = None
    if jax.process_index() == 0:
      try:
        stack.enter_context(_flock(workdir))
      except Exception as e:  # locked, or an unwritable workdir: the others must hear of it too
        error = e
    refused = multihost_utils.broadcast_one_to_all(np.array(error is not None))
    if error is not None:
      raise error
    if refused:
      raise WorkdirLockedError(f"{workdir}: process 0 could not lock it (see its error)")
    yield
