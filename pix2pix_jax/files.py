"""Output files written atomically (a temporary name beside the destination, renamed when
complete), temporary names that carry their writer's pid, host and PID namespace so that only a
dead local writer's leftovers are removed (docs/reliability.md, "Shared output folders"), and OS
errors described in one line.
"""

import contextlib
import errno
import os
import re
import secrets
import socket
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


def check_overwrite(path: str, *, overwrite: bool) -> None:
  """Raises MediaError if the output `path` (a file or a folder) exists and `overwrite` is off."""
  if os.path.exists(path) and not overwrite:
    raise MediaError(f"{path}: output exists (use --overwrite to replace it)")


def check_output(path: str, *, overwrite: bool) -> None:
  """Raises MediaError if the output file `path` exists (without overwrite) or its folder cannot
  be written; creates the folder."""
  check_overwrite(path, overwrite=overwrite)
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

  On any error, Ctrl-C or SIGTERM included, the temporary file is removed. Its name keeps the
  extension, so that ffmpeg and PIL pick the right format. Failures raise MediaError.
  """
  check_output(path, overwrite=overwrite)
  tmp = temp_name(path, "partial")
  try:
    # Created inside the try: an interrupt at any point leaves no file behind.
    try:
      _create(tmp)
    except OSError as e:
      raise MediaError(f"{path}: cannot write output ({e.strerror})") from e
    yield tmp
    check_overwrite(path, overwrite=overwrite)  # it may have appeared while we worked
    os.replace(tmp, path)
  except OSError as e:
    raise MediaError(f"{path}: cannot write output ({describe_os_error(e)})") from e
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)


def temp_name(path: str, tag: str) -> str:
  """A new temporary file name beside `path` (same extension, this process's id and `where()`);
  the file is not created, so that a caller can create it where an interrupt cleans it up."""
  folder, name = os.path.split(os.path.abspath(path))
  stem, ext = os.path.splitext(name)
  owner = f"{os.getpid()}@{where()}"
  return os.path.join(folder, f".{stem}.{owner}-{secrets.token_hex(4)}.{tag}{ext}")


def where() -> str:
  """This process's host and PID namespace as a file-name part: "<host>-p<namespace inode>".

  The host is the host name (the UTS namespace's: a container's own) with characters other than
  letters, digits and '-' as '_', cut to 40; the namespace keeps apart containers that share
  the host's name but not its process ids (docker --network=host). "<host>" alone where
  /proc/self/ns/pid cannot be read.
  """
  host = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())[:40] or "_"
  try:
    return f"{host}-p{os.stat('/proc/self/ns/pid').st_ino}"
  except OSError:
    return host


def _create(path: str) -> None:
  os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def sibling_temp(path: str, tag: str) -> str:
  """A fresh temporary file beside `path` (same extension, `temp_name`), created empty."""
  tmp = temp_name(path, tag)
  _create(tmp)
  return tmp


# temp_name's names: ".<stem>.<pid>@<where>-<8 hex digits>.<tag><ext>", and the older ones
# without a host: ".<stem>.<pid>-<8 hex digits>.<tag><ext>".
_TEMP_NAME = re.compile(r"^\..*\.(\d+)@([A-Za-z0-9_-]+)-[0-9a-f]{8}\.[a-z]+(\.[^.]*)?$")
_HOSTLESS_TEMP_NAME = re.compile(r"^\..*\.(\d+)-[0-9a-f]{8}\.[a-z]+(\.[^.]*)?$")


def _running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def remove_stale_temps(folder: str) -> list[str]:
  """Removes the temporary files in `folder` written on this host and PID namespace (`where()`)
  by a process that no longer runs (a killed run's leftovers); returns their paths. Files of
  running processes, of other hosts or namespaces, and hostless (older) names are left alone."""
  try:
    names = os.listdir(folder)
  except OSError:
    return []
  here = where()
  removed = []
  for name in sorted(names):
    match = _TEMP_NAME.match(name)
    if match is None or match.group(2) != here or _running(int(match.group(1))):
      continue
    path = os.path.join(folder, name)
    with contextlib.suppress(OSError):  # gone already, or not ours to remove: leave it
      os.remove(path)
      removed.append(path)
  return removed


def hostless_temps(folder: str) -> list[str]:
  """The temporary files in `folder` named in the older format without a host, which
  `remove_stale_temps` leaves alone (their writer may run on another host)."""
  try:
    names = os.listdir(folder)
  except OSError:
    return []
  return [os.path.join(folder, n) for n in sorted(names) if _HOSTLESS_TEMP_NAME.match(n)]


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
