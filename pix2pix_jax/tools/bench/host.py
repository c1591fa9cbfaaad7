"""The host side of colourising video: each stage's cost per core, serial against chunked, a
projection for a bigger host whose model costs nothing, and peak RSS for 1 and N workers
(`pix2pix-benchmark video --host`; its records are described in docs/video.md).
"""

import argparse
import fractions
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import jax
import numpy as np

from pix2pix_jax import cli, parallel
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import (
  chunk_plan,
  hint_track,
  memory,
  probe,
  sample_clip,
  source,
  temporal,
  writer,
)
from pix2pix_jax.colorize.video import clip as clip_lib
from pix2pix_jax.tools import shapes
from pix2pix_jax.tools.bench import video

PRESETS = ("veryfast", "superfast", "ultrafast")


def cpu_seconds() -> float:
  """User + system CPU seconds of this process and its finished children."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(fn: Any) -> dict[str, float]:
  """Runs fn() -> frames; returns frames, wall and CPU seconds, frames/s and per core."""
  cpu, wall = cpu_seconds(), time.perf_counter()
  frames = fn()
  wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
  return {
    "frames": frames,
    "seconds": wall,
    "cpu_seconds": cpu,
    "fps": frames / wall,
    "fps_per_core": frames / max(cpu, 1e-9),
    "cpu_ms_per_frame": 1000 * cpu / frames,
  }


def _decode(clip: str, batch: int) -> int:
  info = probe.probe(clip)
  backend, decord_reader = source.choose_backend(clip, info)
  items = source.iter_chunks(clip, batch, reader=decord_reader, backend=backend, info=info)
  del decord_reader
  return sum(len(c) for c in items)


def _prepare_compose(colorizer: colorizer_lib.Colorizer, width: int, height: int, n: int) -> Any:
  rng = np.random.default_rng(0)
  batch = rng.integers(0, 256, (colorizer.batch_size, height, width, 3), dtype=np.uint8)
  r = colorizer.render_size
  ab = jax.device_put(
    np.zeros((colorizer.batch_size, r, r, 2), np.float32), parallel.batch_sharding(colorizer.mesh)
  )

  def once() -> None:
    lightness, _ = colorizer.prepare(batch)
    np.asarray(colorizer.compose(lightness, ab))

  once()  # compiles

  def run() -> int:
    for _ in range(max(1, n // colorizer.batch_size)):
      once()
    return max(1, n // colorizer.batch_size) * colorizer.batch_size

  return run


def _hint_track(clip: str) -> int:
  """The keyframe hints' first pass (its own decode, cuts, the track of a two-stroke scribble
  on frame 0 through its shot); returns the frames it passed over."""
  info = probe.probe(clip)
  keys = [video.scribble_keyframe(info.height, info.width)]
  return hint_track.first_pass(
    clip, info, keys, cut_threshold=temporal.DEFAULT_CUT_THRESHOLD, progress=False
  ).frames


def _free_model_pipeline(clip: str, batch: int, preset: str) -> int:
  """decode -> encode through the reader and writer threads, frames unchanged."""
  info = probe.probe(clip)
  backend, decord_reader = source.choose_backend(clip, info)
  items = source.iter_chunks(clip, batch, reader=decord_reader, backend=backend, info=info)
  del decord_reader
  frames = 0
  with tempfile.TemporaryDirectory() as tmp:
    encoder = writer.FrameWriter(
      os.path.join(tmp, "out.mp4"),
      info.width,
      info.height,
      fractions.Fraction(info.fps or 25).limit_denominator(1001),
      writer.EncodeOptions(preset=preset),
    )
    for item in items:
      encoder.write(item)
      frames += len(item)
    encoder.close()
  return frames


def comparison_chunk_seconds(seconds: float, workers: int) -> float:
  """The clip's default chunk length where that gives each worker 2 chunks, else 2 a worker."""
  default = chunk_plan.default_chunk_seconds(seconds)
  return default if seconds >= 2 * workers * default else seconds / (2 * workers)


def serial_vs_chunked(
  colorizer: colorizer_lib.Colorizer,
  clip: str,
  workers: int,
  chunk_seconds: float,
  encode: writer.EncodeOptions,
) -> dict[str, float]:
  """End-to-end frames/s (and CPU ms a frame) of `clip` colourised by one pipeline and by
  `workers` chunked ones, after a run of a 1-second clip of its size (compiles)."""
  info = probe.probe(clip)
  with tempfile.TemporaryDirectory() as out:
    short = sample_clip.make_sample_clip(
      os.path.join(out, "short.mp4"), seconds=1, size=(info.width, info.height)
    )
    clip_lib.colorize_video(
      colorizer, short, os.path.join(out, "short_out.mp4"), workers=1, encode=encode, progress=False
    )
    dst = os.path.join(out, "out.mp4")

    def once(n: int) -> int:
      if n == 1:
        result = clip_lib.colorize_video(
          colorizer, clip, dst, workers=1, encode=encode, progress=False
        )
      else:
        result = clip_lib.colorize_video(
          colorizer,
          clip,
          dst,
          workers=n,
          chunk_seconds=chunk_seconds,
          encode=encode,
          progress=False,
          overwrite=True,
        )
      os.remove(dst)
      return result.frames

    serial, chunked = measured(lambda: once(1)), measured(lambda: once(workers))
  return {
    "serial_fps": serial["fps"],
    "chunked_fps": chunked["fps"],
    "chunked_over_serial": chunked["fps"] / serial["fps"],
    "serial_cpu_ms_per_frame": serial["cpu_ms_per_frame"],
    "chunked_cpu_ms_per_frame": chunked["cpu_ms_per_frame"],
  }


def _peak_rss(args: Any, clip: str, workers: int, chunk_seconds: float) -> dict[str, Any]:
  cmd = [sys.executable, "-m", "pix2pix_jax.tools.bench.host", "--clip", clip]
  cmd += [*shapes.to_flags(args), "--preset", args.preset, "--workers", str(workers)]
  cmd += ["--chunk-seconds", str(chunk_seconds)]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"memory subprocess failed: {probe.last_line(proc.stderr)}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args: Any) -> list[dict]:
  """The host_* records (docs/video.md, "What `pix2pix-benchmark video --host` records")."""
  memory.tune_memory()
  width, height = video._size(args)
  colorizer = video.make_colorizer(args)
  workers = args.workers or chunk_plan.default_workers(width, height, colorizer.batch_size)
  shape = {
    "clip_size": f"{width}x{height}",
    "render_size": colorizer.render_size,
    "batch_size": colorizer.batch_size,
    "cpu_count": source.usable_cores(),
    "workers": workers,
    "loadavg_1m": os.getloadavg()[0],
  }
  records = []
  with tempfile.TemporaryDirectory() as tmp:
    clip = sample_clip.make_sample_clip(
      os.path.join(tmp, "clip.mp4"), seconds=args.seconds, size=(width, height)
    )
    frames = probe.count_frames(clip)
    batch = colorizer.batch_size
    stages = {"decode": measured(lambda: _decode(clip, batch))}
    few = max(2 * batch, min(frames, 4 * batch))  # the model stages are slow on a CPU
    stages["prepare_compose"] = measured(_prepare_compose(colorizer, width, height, few))
    stages["hint_track"] = measured(lambda: _hint_track(clip))
    model = video.time_model(colorizer, height, width, batches=few // batch)
    stages["model"] = {"frames": model["frames"], "fps": model["fps"]}
    # Encoding real frames (the sample clip's, through the reader and writer threads with a
    # model that costs nothing): random frames cost x264 several times more than film.
    for preset in PRESETS:
      stages[f"pipeline_{preset}"] = measured(lambda p=preset: _free_model_pipeline(clip, batch, p))
    ms = {name: rec.get("cpu_ms_per_frame") for name, rec in stages.items()}
    for preset in PRESETS:
      encode_ms = max(1e-6, ms[f"pipeline_{preset}"] - ms["decode"])
      stages[f"encode_{preset}"] = {
        "frames": frames,
        "fps_per_core": 1000 / encode_ms,
        "cpu_ms_per_frame": encode_ms,
        "derived": "pipeline - decode",
      }
    for name, rec in stages.items():
      records.append({"bench": "host_stage", "stage": name, **shape, **rec})

    for preset in PRESETS:
      for tracked in (False, True):
        parts = {"decode": ms["decode"], "encode": stages[f"encode_{preset}"]["cpu_ms_per_frame"]}
        if tracked:  # keyframe hints moved: the first pass over the clip comes first
          parts["hint_track"] = ms["hint_track"]
        per_frame = sum(parts.values())
        records.append(
          {
            "bench": "host_projection",
            **shape,
            "cores": args.project_cores,
            "preset": preset,
            "hints_tracked": tracked,
            "cpu_ms_per_frame": per_frame,
            "fps": args.project_cores * 1000 / per_frame,
            "limit": max(parts, key=parts.get),
            "shares": {k: round(v / per_frame, 3) for k, v in parts.items()},
          }
        )

    encode = writer.EncodeOptions(preset=args.preset)
    chunk_seconds = args.chunk_seconds or comparison_chunk_seconds(args.seconds, workers)
    shape["chunk_seconds"] = chunk_seconds
    compare = serial_vs_chunked(colorizer, clip, workers, chunk_seconds, encode)
    records.append({"bench": "host_serial_vs_chunked", **shape, **compare})
    peaks = {n: _peak_rss(args, clip, n, chunk_seconds) for n in sorted({1, workers})}
    records.append(
      {
        "bench": "host_peak_rss",
        **shape,
        **{f"peak_rss_mb_{n}_workers": p["peak_rss_mb"] for n, p in peaks.items()},
        "estimate_mb_per_worker": chunk_plan.pipeline_bytes(width, height, colorizer.batch_size)
        / 2**20,
      }
    )
  return records


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--host", action="store_true", help="the host-side table instead (see tools/bench/host.py)"
  )
  parser.add_argument("--workers", type=int, default=0, help="--host: workers (0: the default)")
  parser.add_argument("--project-cores", type=int, default=16, help="--host: cores projected")
  parser.add_argument(
    "--chunk-seconds", type=float, default=None, help="--host: chunk length (default: the clip's)"
  )


def _child(argv: list[str]) -> None:
  """Colourises --clip twice with --workers and prints the second run's peak RSS as JSON."""
  parser = argparse.ArgumentParser(prog="python -m pix2pix_jax.tools.bench.host")
  parser.add_argument("--clip", required=True)
  shapes.add_arguments(parser)
  parser.add_argument("--preset", default=writer.DEFAULT_PRESET)
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--workers", type=int, default=1)
  parser.add_argument("--chunk-seconds", type=float, default=None)
  args = parser.parse_args(argv)
  cli.configure()
  memory.tune_memory()
  colorizer = video.make_colorizer(args)
  encode = writer.EncodeOptions(preset=args.preset)
  with tempfile.TemporaryDirectory() as out:
    dst = os.path.join(out, "out.mp4")
    for reset in (False, True):
      if reset:
        video.reset_peak_rss()
      result = clip_lib.colorize_video(
        colorizer,
        args.clip,
        dst,
        workers=args.workers,
        chunk_seconds=args.chunk_seconds if args.workers > 1 else None,
        encode=encode,
        progress=False,
        overwrite=True,
      )
  print(json.dumps({"frames": result.frames, "peak_rss_mb": video.peak_rss_mb()}))


if __name__ == "__main__":
  _child(sys.argv[1:])
