"""pix2pix-app served in its own process, driven through its API (gradio_client): edits and
saved files, sessions that never see each other's hints, bad uploads (photos and clips) answered
with a message while the server keeps serving, 20 requests at once all answered (p95 printed),
and `pix2pix-benchmark app`."""

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app extra is not installed (pip install -e '.[app]')")

from app_clip_test import two_shot_clip  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from helpers import REPO, gradient_photo, hint_generator_workdir, start_app, subprocess_env  # noqa: E402
from PIL import Image  # noqa: E402

pytestmark = pytest.mark.integration

W, H = 160, 120


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("app")
  workdir = hint_generator_workdir(tmp / "hinted")
  proc, url = start_app(workdir, tmp, "--max-megapixels", "5", "--max-file-size", "1mb")
  yield url, tmp
  proc.terminate()
  proc.wait(timeout=30)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
  return gradient_photo(tmp_path_factory.mktemp("photo"), W, H)


def click(client, x, y):
  """A click at photo pixel (x, y) through the gesture endpoint; returns the outputs."""
  return client.predict(json.dumps({"path": [[x, y]]}), 8, "Result", api_name="/gesture")


def test_edits_and_saved_files_through_the_api(server, photo):
  url, _ = server
  client = Client(url, verbose=False)
  outputs = client.predict(handle_file(photo), "Result", api_name="/upload")
  assert "photo.png" in outputs[-1] and "0 hints" in outputs[-1]
  assert np.asarray(Image.open(outputs[1])).shape == (H, W, 3)
  outputs = click(client, 30, 60)
  assert "1 hints" in outputs[-1]
  files, command = client.predict(api_name="/save")
  assert sorted(os.path.basename(f) for f in files) == [
    "photo_color.png",
    "photo_hints.json",
    "photo_hints.png",
  ]
  (points,) = [f for f in files if f.endswith(".json")]
  assert json.load(open(points)) == [{"x": 30, "y": 60, "rgb": [200, 30, 40]}]
  assert "--hints photo_hints.png" in command


def test_sessions_never_see_each_others_hints(server, photo):
  url, _ = server
  a, b = Client(url, verbose=False), Client(url, verbose=False)
  a.predict(handle_file(photo), "Result", api_name="/upload")
  b.predict(handle_file(photo), "Result", api_name="/upload")
  click(a, 20, 20)
  click(a, 40, 40)
  assert "1 hints" in click(b, 100, 100)[-1]
  assert "3 hints" in click(a, 60, 60)[-1]
  files, _ = b.predict(api_name="/save")
  (points,) = [f for f in files if str(f).endswith(".json")]
  assert [(p["x"], p["y"]) for p in json.load(open(points))] == [(100, 100)]


def test_bad_uploads_are_messages_and_the_server_keeps_serving(server, photo, tmp_path):
  url, _ = server
  client = Client(url, verbose=False)
  client.predict(handle_file(photo), "Result", api_name="/upload")
  text = tmp_path / "letter.png"
  text.write_text("not an image")
  huge = tmp_path / "huge.png"
  Image.new("1", (10_000, 10_000)).save(huge)  # 100 megapixels in a few kB
  big = tmp_path / "big.png"
  big.write_bytes(os.urandom(1_500_000))  # over --max-file-size 1mb
  for path, message in [
    (text, "letter.png: not a readable image"),
    (huge, "huge.png: 10000x10000 is 100 megapixels, above this page&#x27;s limit of 5"),
    (big, ""),
  ]:
    with pytest.raises(Exception) as info:
      client.predict(handle_file(str(path)), "Result", api_name="/upload")
    assert message in str(info.value), str(info.value)
  # The session still has its photo, and the server answers.
  assert "1 hints" in click(client, 10, 10)[-1] and "photo.png" in click(client, 11, 90)[-1]


def test_twenty_requests_at_once_are_all_answered(server, photo):
  url, _ = server

  def one(i):
    client = Client(url, verbose=False)
    client.predict(handle_file(photo), "Result", api_name="/upload")
    start = time.perf_counter()
    outputs = click(client, 5 + i * 7, 60)
    return time.perf_counter() - start, outputs[-1]

  with concurrent.futures.ThreadPoolExecutor(20) as pool:
    answers = list(pool.map(one, range(20)))
  assert all("1 hints" in text for _, text in answers), answers
  seconds = np.array([s for s, _ in answers])
  p50, p95 = np.percentile(seconds, [50, 95]) * 1000
  print(f"20 concurrent edits through gradio_client: p50 {p50:.0f} ms, p95 {p95:.0f} ms")


def test_clips_through_the_api_and_bad_ones_are_messages(server, tmp_path):
  url, _ = server
  client = Client(url, verbose=False)
  clip = two_shot_clip(tmp_path / "pan.mkv")
  for name, content, message in [
    ("notes.mp4", b"not a video", "notes.mp4: not a readable media file"),
    ("cut.mkv", open(clip, "rb").read()[:300], "cut.mkv: not a readable media file"),
  ]:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(Exception) as info:
      client.predict(handle_file(str(tmp_path / name)), "Result", api_name="/clip_upload")
    assert message in str(info.value), str(info.value)
  outputs = client.predict(handle_file(clip), "Result", api_name="/clip_upload")
  status, shots = outputs[7], outputs[8]
  assert "pan frame 0" in status and "24 frames, shot 1 of 2" in status and len(shots) == 2


def test_the_app_benchmark_times_the_function_and_the_served_page(tmp_path):
  workdir = hint_generator_workdir(tmp_path / "hinted")
  cmd = [sys.executable, "-m", "pix2pix_jax.tools.bench.main", "app", "--workdir", str(workdir)]
  result = subprocess.run(
    [*cmd, "--megapixels", "0.05", "--edits", "3"],
    cwd=REPO,
    env=subprocess_env(GRADIO_ANALYTICS_ENABLED="False"),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
  assert [r["path"] for r in records] == ["function", "gradio_client"]
  for r in records:
    assert r["bench"] == "app" and r["size"] == "258x194" and r["edits"] == 3
    assert 0 < r["p50_ms"] <= r["p95_ms"]
