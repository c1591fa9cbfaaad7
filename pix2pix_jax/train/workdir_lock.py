"""One training run per workdir: an exclusive `locks.exclusive` on `<workdir>/train.lock`.

The file names the running owner and stays (emptied on a clean exit); a dead run's lock is taken
over. In a multi-process run only process 0 holds it; every process learns whether it got it.
See docs/reliability.md ("Two runs, one workdir").
"""

import contextlib
import functools
import os
from collections.abc import Iterator

import jax
import numpy as np

from pix2pix_jax import errors, locks

LOCK_FILE = "train.lock"


class WorkdirLockedError(errors.UserError):
  """Another live run holds the workdir."""


class UnusableWorkdirError(errors.UserError):
  """The workdir cannot be created or locked (a file in the way, no permission, ...)."""


def _refusal(workdir: str, holder: str) -> WorkdirLockedError:
  return WorkdirLockedError(
    f"{workdir} is being trained by {holder}; wait for it to finish, stop it, "
    "or use another --workdir"
  )


@contextlib.contextmanager
def _flock(workdir: str) -> Iterator[None]:
  path = os.path.join(workdir, LOCK_FILE)
  with contextlib.ExitStack() as stack:
    try:
      os.makedirs(workdir, exist_ok=True)
      refusal = functools.partial(_refusal, workdir)
      stack.enter_context(locks.exclusive(path, subject=workdir, refusal=refusal, remove=False))
    except OSError as e:
      if isinstance(e, errors.UserError):
        raise
      where = f" ({e.filename})" if e.filename else ""
      raise UnusableWorkdirError(f"{workdir}: {e.strerror or e}{where}") from e
    yield


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds the workdir for the body; raises WorkdirLockedError at once if a live run has it,
  UnusableWorkdirError if it cannot be made or locked.

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
