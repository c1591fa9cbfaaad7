"""app/common.py's SessionFiles: a session's images, its uploads and their removal."""

import os
import types

import numpy as np
import pytest

pytest.importorskip("gradio")

from pix2pix_jax.app import common  # noqa: E402


def _request(name):
  return types.SimpleNamespace(session_hash=name)


@pytest.fixture
def files(tmp_path, monkeypatch):
  monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
  return common.SessionFiles(str(tmp_path / "sessions"))


def _upload(files, name, content):
  """A file as Gradio keeps an upload: in its cache, a folder per content."""
  path = os.path.join(files.gradio_cache, content.hex(), name)
  os.makedirs(os.path.dirname(path))
  with open(path, "wb") as f:
    f.write(content)
  return path


def test_shown_images_are_named_by_content_and_only_the_last_two_kept(files):
  a, b = _request("a"), _request("b")
  images = [np.full((4, 5, 3), v, np.uint8) for v in (10, 20, 30)]
  first = files.show(a, "result.jpg", images[0])
  assert files.show(a, "result.jpg", images[0]) == first  # unchanged: the same file
  paths = [files.show(a, "result.jpg", image) for image in images[1:]]
  assert len({first, *paths}) == 3
  assert sorted(os.listdir(files.folder(a))) == sorted(os.path.basename(p) for p in paths)
  assert os.path.dirname(files.show(b, "result.jpg", images[0])) != files.folder(a)


def test_an_upload_goes_with_the_last_session_that_made_it(files):
  a, b = _request("a"), _request("b")
  shared, own = _upload(files, "photo.png", b"same"), _upload(files, "clip.mkv", b"own")
  files.uploaded(a, shared)
  files.uploaded(b, shared)
  files.uploaded(a, own)
  files.show(a, "result.jpg", np.zeros((2, 2, 3), np.uint8))
  files.end(a)
  assert not os.path.exists(files.folder(a))
  assert not os.path.exists(own) and not os.path.exists(os.path.dirname(own))
  assert os.path.exists(shared)  # b still has it
  files.end(b)
  assert not os.path.exists(shared)


def test_gradios_stray_empty_files_are_removed_once_a_second_old(files):
  os.makedirs(files.gradio_cache)
  stray, fresh = (os.path.join(files.gradio_cache, n) for n in ("tmpold", "tmpnew"))
  data = os.path.join(files.gradio_cache, "tmpdata")
  for path in (stray, fresh, data):
    open(path, "wb").close()
  with open(data, "wb") as f:
    f.write(b"x")
  os.utime(stray, (0, 0))
  os.utime(data, (0, 0))
  files.end(_request("a"))
  assert sorted(os.listdir(files.gradio_cache)) == ["tmpdata", "tmpnew"]
