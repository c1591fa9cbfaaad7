"""Output files written atomically, and OS errors described in one line.

An output is written to a temporary file beside its destination and renamed onto it only once it
is complete, so a destination never holds a partial file.
"""

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator

from pix2pix_jax import errors


class MediaError(errors.UserError):
  """A user-facing failure about one file: str() is the one-line message naming it."""


def describe_os_error(e: OSError) -> str:
  """The cause of `e` in a few words ("no space left on device", "Permission denied", ...)."""
  if e.errno == errno.ENOSPC:
    return "no space left on device"
  return e.strerror or str(e)


def check_output(path: str, *, overwrite: bool) -> None:
  """Raises MediaError if `path` exists (without overwrite) or its folder cannot be written;
  creates the folder."""
  if os.path.exists(path) and not overwrite:
    raise MediaError(f"{path}: output exists (use --overwrite to replace it)")
  if os.path.isdir(path):
    raise MediaError(f"{path}: output is a directory")
  folder = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise MediaError(f"{path}: cannot create output folder ({e.strerror})") from e
  if not os.access(folder, os.W_OK):
    raise MediaError(f"{path}: output folder is not writable")


@contextlib.contextmanager
def atomic_output(path: str, *, overwrite: bool = False) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` only if the body succeeds.

  On any error the temporary file is removed. Its name keeps the extension, so that ffmpeg and
  PIL pick the right format. Failures raise MediaError.
  """
  check_output(path, overwrite=overwrite)
  folder, name = os.path.split(os.path.abspath(path))
  stem, ext = os.path.splitext(name)
  try:
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{ext}", dir=folder)
  except OSError as e:
    raise MediaError(f"{path}: cannot write output ({e.strerror})") from e
  os.close(fd)
  try:
    yield tmp
    if os.path.exists(path) and not overwrite:  # appeared while we worked
      raise MediaError(f"{path}: output exists (use --overwrite to replace it)")
    os.replace(tmp, path)
  except OSError as e:
    raise MediaError(f"{path}: cannot write output ({describe_os_error(e)})") from e
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)


def sibling_temp(path: str, tag: str) -> str:
  """A fresh temporary file name beside `path` (same extension), created empty."""
  folder, name = os.path.split(os.path.abspath(path))
  stem, ext = os.path.splitext(name)
  fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".{tag}{ext}", dir=folder)
  os.close(fd)
  return tmp


def write_atomic(path: str, data: str | bytes) -> None:
  """Writes `data` (text or bytes) to `path` through a temporary file in the same folder,
  creating the folder; always replaces `path`. Raises OSError; leaves no temporary file."""
  folder = os.path.dirname(path) or "."
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
      f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise
