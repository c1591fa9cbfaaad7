"""pix2pix-benchmark app: an edit's round trip in pix2pix-app (docs/app.md) for a photo of
--megapixels, from a click to the refreshed result: through the function the page calls
(actions.click, plus drawing and encoding what the page shows) and through a served page
(gradio_client's /gesture, the result image fetched). p50 and p95 of --edits clicks each."""

import argparse
import json
import os
import shutil
import socket
import tempfile
import time

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument(
    "--workdir", help="a training workdir (the quickstart hint model: runs/hints)"
  )
  source.add_argument("--model", metavar="FILE.p2p", help="a model file from pix2pix-export")
  parser.add_argument("--megapixels", type=float, default=1.0, help="the photo's size")
  parser.add_argument("--edits", type=int, default=30, help="timed clicks per path")
  parser.add_argument("--no-server", action="store_true", help="only the in-process path")


def gray_photo(megapixels: float, folder: str) -> str:
  """A 4:3 gray photo of about `megapixels` (an embedded sample, resized), saved as PNG."""
  from PIL import Image

  from pix2pix_jax import images

  width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
  height = int(round(width * 3 / 4))
  sample = os.path.join(images.SAMPLES_DIR, "eval", "skimage_chelsea.jpg")
  gray = Image.open(sample).convert("L").resize((width, height), Image.Resampling.BICUBIC)
  path = os.path.join(folder, "photo.png")
  gray.save(path)
  return path


def _stats(seconds: list[float]) -> dict:
  p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
  return {"p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1), "edits": len(seconds)}


def _clicks(n: int, width: int, height: int) -> list[tuple[int, int]]:
  rng = np.random.default_rng(0)
  return [(int(rng.integers(width)), int(rng.integers(height))) for _ in range(n)]


def run(args) -> list[dict]:
  from pix2pix_jax.app import actions, canvas, page, session
  from pix2pix_jax.app import engine as engine_lib
  from pix2pix_jax.colorize import colorizer as colorizer_lib

  if args.model:
    colorizer = colorizer_lib.Colorizer.from_exported(args.model)
  else:
    colorizer = colorizer_lib.Colorizer.from_workdir(args.workdir, batch_size=1)
  engine = engine_lib.Engine(colorizer)
  engine.warm_up()
  folder = tempfile.mkdtemp(prefix="pix2pix-bench-app-")
  records = []
  try:
    path = gray_photo(args.megapixels, folder)
    s = actions.open_photo(engine, session.Session(), path)
    width, height = s.photo.size
    common = {"bench": "app", "size": f"{width}x{height}", "render_size": colorizer.render_size}
    seconds = []
    for x, y in _clicks(args.edits, width, height):
      start = time.perf_counter()
      s = actions.click(engine, s.replace(hints=s.hints.select(None)), x, y, s.photo.size)
      shown = canvas.draw(s.photo.gray, s.hints, s.photo.size)
      page.write_image(folder, "result.jpg", s.rendered.preview)  # what the page sends
      page.write_image(folder, "hints.jpg", shown)
      seconds.append(time.perf_counter() - start)
    records.append({**common, "path": "function", **_stats(seconds)})
    if not args.no_server:
      records.append({**common, "path": "gradio_client", **_served(engine, path, args.edits)})
  finally:
    shutil.rmtree(folder, ignore_errors=True)
  return records


def _served(engine, path: str, edits: int) -> dict:
  """The same clicks through a page served on a free local port, via gradio_client: each the
  request, then the refreshed result fetched (as the browser does; it fetches the page's other
  changed images beside it)."""
  import httpx
  from gradio_client import Client, handle_file

  from pix2pix_jax.app import page

  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  root = page.new_root()
  demo = page.build(engine, root)
  try:
    _, url, _ = demo.launch(
      server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True
    )
    client = Client(url, verbose=False, download_files=False)
    outputs = client.predict(handle_file(path), "Result", api_name="/upload")
    width, height = (int(v) for v in outputs[-1].split(" · ")[1].split("x"))
    seconds = []
    for x, y in _clicks(edits, width, height):
      client.predict(None, "Result", api_name="/select")  # a click selects no hint
      start = time.perf_counter()
      outputs = client.predict(json.dumps({"path": [[x, y]]}), 8, "Result", api_name="/gesture")
      httpx.get(outputs[1]["url"]).raise_for_status()  # the result image
      seconds.append(time.perf_counter() - start)
    return _stats(seconds)
  finally:
    demo.close()
    shutil.rmtree(root, ignore_errors=True)
