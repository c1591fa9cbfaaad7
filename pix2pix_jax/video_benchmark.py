"""Video pipeline benchmark: decode, model, encode and end-to-end rates, and bounded memory.

  python -m pix2pix_jax.benchmark video --seconds 20 --res 128 --ngf 32 --num-downs 7 --batch 8

`run(args)` renders a sample clip (video.make_sample_clip) of `--seconds`, builds a Colorizer
(random weights of the given ngf / num_downs at render size `--res`, or `--workdir`'s generator)
and returns one record per measurement: decode-only, model-only, encode-only and end-to-end
frames/s, end-to-end / model-only, and the peak RSS of colourising a clip and a 10x longer one,
each in a fresh subprocess that colourises its clip twice: the second run's peak is what
streaming holds, the first's also has compilation and start-up in it.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from pix2pix_jax import config_files, inference, media, video

REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def make_colorizer(args: Any) -> inference.Colorizer:
  """--workdir's generator, or a randomly initialised one of the benchmark's shape."""
  import jax
  import jax.numpy as jnp

  from pix2pix_jax import models

  workdir = args.workdir
  if workdir:
    return inference.Colorizer.from_workdir(workdir, render_size=args.res, batch_size=args.batch)
  config = config_files.apply_overrides(
    config_files.load(os.path.join(REPO_CONFIGS, "default.py")),
    {
      "model.ngf": args.ngf,
      "model.num_downs": args.num_downs,
      "data.crop_size": args.res,
      "data.load_size": args.res,
      "color_space": args.color_space,
      "model.dtype": args.dtype,
    },
  )
  generator = models.make_generator(config)
  x = jnp.zeros((1, args.res, args.res, 1), jnp.float32)
  variables = generator.init(jax.random.key(0), x, train=False)
  return inference.Colorizer(config, variables, batch_size=args.batch)


def _size(args: Any) -> tuple[int, int]:
  width, height = (int(v) for v in args.size.lower().split("x"))
  return width, height


def _median(fn: Any, repeats: int) -> dict[str, float]:
  runs = [fn() for _ in range(max(1, repeats))]
  best = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
  best["fps"] = best["frames"] / best["seconds"]
  return best


def _memory_in_subprocess(args: Any, clip: str) -> dict[str, Any]:
  """Peak RSS of colourising `clip` in a fresh interpreter (see `_memory_child`)."""
  cmd = [sys.executable, "-m", "pix2pix_jax.video_benchmark", "--clip", clip]
  cmd += ["--res", str(args.res), "--ngf", str(args.ngf), "--num-downs", str(args.num_downs)]
  cmd += ["--batch", str(args.batch), "--preset", args.preset]
  cmd += ["--color-space", args.color_space, "--dtype", args.dtype]
  if args.workdir:
    cmd += ["--workdir", args.workdir]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"memory subprocess failed: {media.last_line(proc.stderr)}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args: Any) -> list[dict]:
  """The records described in the module docstring."""
  video.tune_memory()  # as the colourising commands do
  width, height = _size(args)
  repeats = max(1, min(args.steps, 3))
  preset = args.preset
  encode = video.EncodeOptions(preset=preset)
  shape = {
    "res": args.res,
    "ngf": args.ngf,
    "num_downs": args.num_downs,
    "batch": args.batch,
    "size": f"{width}x{height}",
    "preset": preset,
    "cpu_count": os.cpu_count(),
  }
  records = []
  with tempfile.TemporaryDirectory() as tmp:
    clip = video.make_sample_clip(
      os.path.join(tmp, "clip.mp4"), seconds=args.seconds, size=(width, height)
    )
    frames = media.count_frames(clip)
    colorizer = make_colorizer(args)
    decode = _median(lambda: video.time_decode(clip, colorizer.batch_size), repeats)
    model = _median(
      lambda: video.time_model(colorizer, height, width, batches=max(4, frames // args.batch)),
      repeats,
    )
    enc = _median(lambda: video.time_encode(height, width, frames, options=encode), repeats)
    video.time_end_to_end(colorizer, clip, encode=encode)  # warm-up: compiles prepare/compose
    e2e = _median(lambda: video.time_end_to_end(colorizer, clip, encode=encode), repeats)
    for name, rec in (("decode", decode), ("model", model), ("encode", enc), ("end_to_end", e2e)):
      records.append(
        {"bench": f"video_{name}", **shape, "frames": rec["frames"], "fps": rec["fps"]}
      )
    records.append({"bench": "video_e2e_over_model", **shape, "ratio": e2e["fps"] / model["fps"]})
    long_clip = video.make_sample_clip(
      os.path.join(tmp, "long.mp4"), seconds=args.seconds * 10, size=(width, height)
    )
    short = _memory_in_subprocess(args, clip)
    long = _memory_in_subprocess(args, long_clip)
    records.append(
      {
        "bench": "video_peak_rss",
        **shape,
        "short_frames": short["frames"],
        "short_peak_rss_mb": short["peak_rss_mb"],
        "long_frames": long["frames"],
        "long_peak_rss_mb": long["peak_rss_mb"],
        "short_first_run_peak_rss_mb": short["first_run_peak_rss_mb"],
        "long_first_run_peak_rss_mb": long["first_run_peak_rss_mb"],
        "long_over_short": long["peak_rss_mb"] / short["peak_rss_mb"],
      }
    )
  return records


def _memory_child(argv: list[str]) -> None:
  """Colourises --clip twice and prints {"frames", "fps", "peak_rss_mb"} of the second run, and
  "first_run_peak_rss_mb" (compilation and start-up included) as JSON."""
  parser = argparse.ArgumentParser(prog="python -m pix2pix_jax.video_benchmark")
  parser.add_argument("--clip", required=True)
  parser.add_argument("--res", type=int, default=128)
  parser.add_argument("--ngf", type=int, default=32)
  parser.add_argument("--num-downs", type=int, default=7)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--preset", default=video.DEFAULT_PRESET)
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--color-space", default="rgb")
  parser.add_argument("--dtype", default="float32")
  args = parser.parse_args(argv)
  video.tune_memory()
  colorizer = make_colorizer(args)
  encode = video.EncodeOptions(preset=args.preset)
  first = video.time_end_to_end(colorizer, args.clip, encode=encode, reset_peak=False)
  # Measured again with compilation and start-up behind it: what streaming the clip holds.
  result = video.time_end_to_end(colorizer, args.clip, encode=encode, reset_peak=True)
  print(json.dumps({**result, "first_run_peak_rss_mb": first["peak_rss_mb"]}))


if __name__ == "__main__":
  _memory_child(sys.argv[1:])
