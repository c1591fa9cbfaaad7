"""Video pipeline benchmark (`pix2pix-benchmark video`): decode, model, encode and end-to-end
rates, and bounded memory; the method and figures are in docs/video.md ("Speed and memory").
"""

import argparse
import fractions
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from pix2pix_jax import cli
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import clip as clip_lib
from pix2pix_jax.colorize.video import (
  colourise,
  hint_track,
  memory,
  probe,
  sample_clip,
  source,
  temporal,
  writer,
)
from pix2pix_jax.hints import files as hint_files
from pix2pix_jax.hints import keyframes
from pix2pix_jax.tools import shapes

# ---------------------------------------------------------------------------------------------
# Pieces to time


def peak_rss_mb() -> float:
  """Peak resident memory of this process (since start or the last `reset_peak_rss`), MiB."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
  """Resets the kernel's peak-RSS counter (Linux); returns whether it could."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def time_decode(path: str, chunk_size: int = 8) -> dict[str, float]:
  """Decode only, through the same reader thread and backend choice as colourising (decord,
  or the ffmpeg pipe where decord is missing or would misread the clip)."""
  start = time.perf_counter()
  info = probe.probe(path)
  backend, decord_reader = source.choose_backend(path, info)
  chunks = source.iter_chunks(path, chunk_size, reader=decord_reader, backend=backend, info=info)
  del decord_reader  # iter_chunks owns it now
  frames = sum(len(c) for c in chunks)
  seconds = time.perf_counter() - start
  return {"frames": frames, "seconds": seconds, "fps": frames / seconds}


def time_model(
  colorizer: colorizer_lib.Colorizer,
  height: int,
  width: int,
  batches: int = 4,
  smoothing: float = temporal.DEFAULT_SMOOTHING,
) -> dict[str, float]:
  """Colorizer only (prepare, generator, smoothing as `colorize_video` does it, compose) on
  random frames, each batch read back one batch late as `colorize_video` reads them (the next
  batch is queued first), after two warm-up batches (the second call, the first with a state the
  model produced, compiles again)."""
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (colorizer.batch_size, height, width, 3), dtype=np.uint8)
  stages = colourise.ClipColorizer(colorizer, temporal.Smoothing(smoothing))
  state = stages.initial_state()

  def one(previous):
    nonlocal state
    out, state, _ = stages(frames, 0, state)
    if previous is not None:
      np.asarray(previous)
    return out

  np.asarray(one(one(None)))
  start = time.perf_counter()
  pending = None
  for _ in range(batches):
    pending = one(pending)
  np.asarray(pending)
  seconds = time.perf_counter() - start
  n = batches * colorizer.batch_size
  return {"frames": n, "seconds": seconds, "fps": n / seconds}


def time_encode(
  height: int,
  width: int,
  frames: int = 100,
  fps: float = 25.0,
  options: writer.EncodeOptions | None = None,
) -> dict[str, float]:
  """Encode only: synthetic frames piped through FrameWriter into a temporary file."""
  rng = np.random.default_rng(0)
  base = rng.integers(0, 256, (8, height, width, 3), dtype=np.uint8)
  with tempfile.TemporaryDirectory() as tmp:
    encoder = writer.FrameWriter(
      os.path.join(tmp, "out.mp4"),
      width,
      height,
      fractions.Fraction(fps).limit_denominator(1001),
      options or writer.EncodeOptions(),
    )
    start = time.perf_counter()
    for i in range(0, frames, len(base)):
      encoder.write(np.roll(base, i, axis=2)[: min(len(base), frames - i)])
    encoder.close()
    seconds = time.perf_counter() - start
  return {"frames": frames, "seconds": seconds, "fps": frames / seconds}


def time_end_to_end(
  colorizer: colorizer_lib.Colorizer, src: str, *, reset_peak: bool = True, **kwargs: Any
) -> dict[str, float]:
  """The whole colourisation of `src` into a temporary file, with the peak RSS it reached
  (since the start of the process where reset_peak is False)."""
  if reset_peak:
    reset_peak_rss()
  with tempfile.TemporaryDirectory() as tmp:
    dst = os.path.join(tmp, "out" + os.path.splitext(src)[1])
    kwargs = {"workers": 1, **kwargs}  # one pipeline unless asked
    result = clip_lib.colorize_video(colorizer, src, dst, progress=False, **kwargs)
  return {
    "frames": result.frames,
    "seconds": result.seconds,
    "fps": result.frames / result.seconds,
    "peak_rss_mb": peak_rss_mb(),
  }


# ---------------------------------------------------------------------------------------------
# The benchmark


def make_colorizer(args: Any, hints: bool = False) -> colorizer_lib.Colorizer:
  """--workdir's generator, or a randomly initialised one of the benchmark's shape (`hints`: a
  hint generator where --workdir's is not one)."""
  config = shapes.config_from_args(args)
  if args.workdir:
    colorizer = colorizer_lib.Colorizer.from_workdir(
      args.workdir, render_size=args.render_size, batch_size=config.batch_size
    )
    if colorizer.takes_hints or not hints:
      return colorizer
  if hints:
    config.model.hints = True
    config.model.hint_luminance_weight = config.model.get("hint_luminance_weight", 2.5)
  _, variables = shapes.random_generator(config)
  return colorizer_lib.Colorizer.from_config(config, variables, batch_size=config.batch_size)


def _size(args: Any) -> tuple[int, int]:
  width, height = (int(v) for v in args.clip_size.lower().split("x"))
  return width, height


def _median(fn: Any, repeats: int) -> dict[str, float]:
  runs = [fn() for _ in range(max(1, repeats))]
  best = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
  best["fps"] = best["frames"] / best["seconds"]
  return best


def _memory_in_subprocess(args: Any, clip: str) -> dict[str, Any]:
  """Peak RSS of colourising `clip` in a fresh interpreter (see `_memory_child`)."""
  cmd = [sys.executable, "-m", "pix2pix_jax.tools.bench.video", "--clip", clip]
  cmd += [*shapes.to_flags(args), "--preset", args.preset]
  if args.workdir:
    cmd += ["--workdir", args.workdir]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"memory subprocess failed: {probe.last_line(proc.stderr)}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_rates(
  colorizer: colorizer_lib.Colorizer,
  clip: str,
  encode: writer.EncodeOptions,
  repeats: int,
) -> dict[str, dict[str, float]]:
  """Median decode-only, model-only, encode-only and end-to-end rates over `repeats` runs on
  `clip`: {"decode" | "model" | "encode" | "end_to_end": {"frames", "seconds", "fps"}}."""
  info = probe.probe(clip)
  width, height = info.width, info.height
  frames = probe.count_frames(clip)
  decode = _median(lambda: time_decode(clip, colorizer.batch_size), repeats)
  model = _median(
    lambda: time_model(colorizer, height, width, batches=max(4, frames // colorizer.batch_size)),
    repeats,
  )
  enc = _median(lambda: time_encode(height, width, frames, options=encode), repeats)
  time_end_to_end(colorizer, clip, encode=encode)  # warm-up: compiles prepare/compose
  e2e = _median(lambda: time_end_to_end(colorizer, clip, encode=encode), repeats)
  return {"decode": decode, "model": model, "encode": enc, "end_to_end": e2e}


def scribble_keyframe(height: int, width: int) -> keyframes.Keyframe:
  """A keyframe at frame 0: two strokes, red and blue, each a twentieth of the height thick."""
  rgba = np.zeros((height, width, 4), np.uint8)
  h, w, thick = height, width, max(1, height // 20)
  rgba[h // 3 : h // 3 + thick, w // 4 : w // 2] = (200, 40, 40, 255)
  rgba[2 * h // 3 : 2 * h // 3 + thick, w // 2 : 3 * w // 4] = (40, 60, 200, 255)
  return keyframes.Keyframe(0, hint_files.from_rgba(rgba))


def measure_hints(
  colorizer: colorizer_lib.Colorizer, clip: str, encode: writer.EncodeOptions, repeats: int
) -> dict[str, float]:
  """End-to-end frames/s with a keyframe's hints held fixed and tracked through the clip (a
  scribble of two strokes on frame 0), and the tracking first pass's milliseconds a frame."""
  info = probe.probe(clip)
  keys = [scribble_keyframe(info.height, info.width)]
  fps = {}
  for motion in ("fixed", "track"):
    run = lambda m=motion: time_end_to_end(
      colorizer, clip, encode=encode, hints=keys, hint_motion=m
    )  # noqa: E731
    run()  # warm-up
    fps[motion] = _median(run, repeats)["fps"]
  start = time.perf_counter()
  track = hint_track.first_pass(
    clip, info, keys, cut_threshold=temporal.DEFAULT_CUT_THRESHOLD, progress=False
  )
  first_pass_ms = 1000 * (time.perf_counter() - start) / max(1, track.frames)
  return {
    "fixed_fps": fps["fixed"],
    "track_fps": fps["track"],
    "track_over_fixed": fps["track"] / fps["fixed"],
    "first_pass_ms_per_frame": first_pass_ms,
  }


def run(args: Any) -> list[dict]:
  """Records video_{decode,model,encode,end_to_end} frames/s, video_e2e_over_model, video_hints
  (fixed and tracked keyframe hints) and video_peak_rss: a `--seconds` sample clip and a 10x
  longer one, each colourised twice in a fresh process (the second run's peak is what streaming
  holds; the first's has compilation)."""
  memory.tune_memory()  # as the colourising commands do
  width, height = _size(args)
  repeats = max(1, min(args.steps, 3))
  preset = args.preset
  encode = writer.EncodeOptions(preset=preset)
  config = shapes.config_from_args(args)
  shape = {
    "render_size": config.data.crop_size,
    "ngf": config.model.ngf,
    "num_downs": config.model.num_downs,
    "batch_size": config.batch_size,
    "clip_size": f"{width}x{height}",
    "preset": preset,
    "cpu_count": os.cpu_count(),
  }
  records = []
  with tempfile.TemporaryDirectory() as tmp:
    clip = sample_clip.make_sample_clip(
      os.path.join(tmp, "clip.mp4"), seconds=args.seconds, size=(width, height)
    )
    rates = measure_rates(make_colorizer(args), clip, encode, repeats)
    for name, rec in rates.items():
      records.append(
        {"bench": f"video_{name}", **shape, "frames": rec["frames"], "fps": rec["fps"]}
      )
    ratio = rates["end_to_end"]["fps"] / rates["model"]["fps"]
    records.append({"bench": "video_e2e_over_model", **shape, "ratio": ratio})
    hinted = measure_hints(make_colorizer(args, hints=True), clip, encode, repeats)
    records.append({"bench": "video_hints", **shape, **hinted})
    long_clip = sample_clip.make_sample_clip(
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
  parser = argparse.ArgumentParser(prog="python -m pix2pix_jax.tools.bench.video")
  parser.add_argument("--clip", required=True)
  shapes.add_arguments(parser)
  parser.add_argument("--preset", default=writer.DEFAULT_PRESET)
  parser.add_argument("--workdir", default=None)
  args = parser.parse_args(argv)
  cli.configure()
  memory.tune_memory()
  colorizer = make_colorizer(args)
  encode = writer.EncodeOptions(preset=args.preset)
  first = time_end_to_end(colorizer, args.clip, encode=encode, reset_peak=False)
  # Measured again with compilation and start-up behind it: what streaming the clip holds.
  result = time_end_to_end(colorizer, args.clip, encode=encode, reset_peak=True)
  print(json.dumps({**result, "first_run_peak_rss_mb": first["peak_rss_mb"]}))


if __name__ == "__main__":
  _memory_child(sys.argv[1:])
