"""What the page's tabs share: a session's files (its folder, the images it is shown, its
uploads), user errors as messages in the page, and event wiring."""

import contextlib
import functools
import glob
import hashlib
import html
import os
import shutil
import tempfile
import threading
import time

import gradio as gr
import numpy as np
from PIL import Image

from pix2pix_jax import errors, images

VIEWS = ("Result", "Side by side", "Slider")


def samples() -> dict[str, str]:
  """The embedded sample photos by file name."""
  found = sorted(glob.glob(os.path.join(images.SAMPLES_DIR, "*", "*.jpg")))
  return {os.path.basename(p): p for p in found}


def user_errors(fn):
  """A UserError (bad file, hints) becomes a message in the page; the session is unchanged."""

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except errors.UserError as e:
      raise gr.Error(html.escape(str(e)), print_exception=False) from e

  return wrapped


def wire(outputs, event, fn, inputs, api_name, **kwargs) -> None:
  """`event(fn)` with user errors as messages; without `api_name` the endpoint is private."""
  kwargs |= {"api_name": api_name} if api_name else {"api_visibility": "private"}
  event(user_errors(fn), inputs, outputs, **kwargs)


class SessionFiles:
  """Each browser session's files: its own folder under `root` (the images it is shown, its
  downloads: served from there, not copied into Gradio's cache) and its uploads (in Gradio's
  cache, which is by content: an upload goes when the last live session that uploaded it ends)."""

  def __init__(self, root: str):
    self.root = root
    self.gradio_cache = gr.utils.get_upload_folder()
    self._uploads: dict[str, set[str]] = {}
    self._lock = threading.Lock()

  def folder(self, request: gr.Request) -> str:
    """The session's own folder (not created here)."""
    name = (request.session_hash if request is not None else None) or "api"
    return os.path.join(self.root, "".join(c for c in name if c.isalnum() or c in "-_") or "api")

  def uploaded(self, request: gr.Request, path: str | None) -> None:
    """Notes an upload of the session, to be removed when the session ends."""
    if path:
      with self._lock:
        self._uploads.setdefault(os.path.abspath(path), set()).add(self.folder(request))
    self._remove_stray_empty_files()

  def end(self, request: gr.Request) -> None:
    """The session's folder and the uploads no other live session made, removed (its tab
    closed)."""
    folder = self.folder(request)
    shutil.rmtree(folder, ignore_errors=True)
    with self._lock:
      gone = [path for path, owners in self._uploads.items() if owners == {folder}]
      for owners in self._uploads.values():
        owners.discard(folder)
      for path in gone:
        del self._uploads[path]
    for path in gone:
      with contextlib.suppress(OSError):
        os.remove(path)
        os.rmdir(os.path.dirname(path))  # Gradio's folder for that content, if now empty
    self._remove_stray_empty_files()

  def _remove_stray_empty_files(self, age: float = 1.0) -> None:
    """Gradio 6's UploadButton leaves an empty temporary file in its cache for every upload
    (`_process_single_file`); those older than `age` seconds go, at each upload and session
    end (an upload being received has data in its file within moments)."""
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(self.gradio_cache) as entries:
      for entry in entries:
        if entry.name.startswith("tmp") and entry.is_file(follow_symlinks=False):
          info = entry.stat(follow_symlinks=False)
          if info.st_size == 0 and now - info.st_mtime > age:
            with contextlib.suppress(OSError):
              os.remove(entry.path)

  def show(self, request: gr.Request, name: str, image: np.ndarray) -> str:
    """`image` written for the page in the session's folder under a name of its content
    (`stem-<hash>.ext`: an unchanged image is not encoded again, and the browser never shows a
    stale copy); older images of `name` but the previous one are removed. Returns the path."""
    folder = self.folder(request)
    stem, ext = os.path.splitext(name)
    digest = hashlib.blake2b(image.tobytes(), digest_size=8)
    digest.update(repr(image.shape).encode())
    path = os.path.join(folder, f"{stem}-{digest.hexdigest()}{ext}")
    if os.path.exists(path):
      os.utime(path)
    else:
      write_image(folder, os.path.basename(path), image)
    shown = sorted(
      glob.glob(os.path.join(glob.escape(folder), f"{glob.escape(stem)}-*{ext}")), key=_mtime
    )
    for old in shown[:-2]:
      with contextlib.suppress(OSError):
        os.remove(old)
    return path


def _mtime(path: str) -> float:
  """The file's modification time; 0 if another request of the session just removed it."""
  try:
    return os.path.getmtime(path)
  except OSError:
    return 0.0


def write_image(folder: str, name: str, image: np.ndarray) -> str:
  """Writes `image` as folder/name (JPEG or PNG by the extension) in one step; returns it."""
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, name)
  fd, part = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
  with os.fdopen(fd, "wb") as f:
    if name.endswith(".jpg"):
      Image.fromarray(image).save(f, "JPEG", quality=90)
    else:
      Image.fromarray(image).save(f, "PNG", compress_level=1)
  os.replace(part, path)
  return path
