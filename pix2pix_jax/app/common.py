"""What the page's tabs share: a session's folder and the image files it is shown, user errors as
messages in the page, and event wiring."""

import functools
import glob
import html
import os
import shutil
import tempfile

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


def session_folder(root: str, request: gr.Request) -> str:
  """A browser session's own folder under `root` (its downloads, the list of its uploads)."""
  name = (request.session_hash if request is not None else None) or "api"
  return os.path.join(root, "".join(c for c in name if c.isalnum() or c in "-_") or "api")


def remove_session_files(root: str, request: gr.Request) -> None:
  """Removes a session's folder (when its tab closes). Uploads and the images shown stay in
  Gradio's cache, shared by content between sessions: page.DELETE_CACHE clears it."""
  shutil.rmtree(session_folder(root, request), ignore_errors=True)


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
