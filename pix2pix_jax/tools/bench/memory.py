"""Long jobs: peak memory of `pix2pix-colorize` on a long clip against a short one, and on many
images against a few (`pix2pix-benchmark memory`; method and figures: docs/reliability.md,
"Long jobs").
"""

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from pix2pix_jax import checkpoint, xla_flags
from pix2pix_jax.colorize.video import probe
from pix2pix_jax.tools import shapes

# The benchmark's own default shapes: colourising memory, not model size, is what it measures.
DEFAULT_SHAPES = {"render_size": 32, "ngf": 8, "num_downs": 5, "batch_size": 8}


@dataclasses.dataclass
class Measured:
  returncode: int
  stdout: str
  stderr: str
  peak_rss_mb: float
  seconds: float


# Runs argv[2:] and writes getrusage(RUSAGE_CHILDREN).ru_maxrss (KiB) to argv[1]. Linux counts
# into a child's peak the memory of the process it was forked from, until exec: measured from
# this small launcher, the peak is the command's own rather than the (large) caller's.
_LAUNCHER = """import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
  f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def run_measured(cmd: list[str], *, env: dict | None = None, cwd: str | None = None) -> Measured:
  """Runs `cmd` to completion; its exit status, output and peak RSS (MiB: the largest of the
  command's process and the children it waited for)."""
  with tempfile.TemporaryDirectory() as tmp:
    rss_file = os.path.join(tmp, "maxrss")
    start = time.perf_counter()
    proc = subprocess.run(
      [sys.executable, "-S", "-c", _LAUNCHER, rss_file, *cmd],
      env=env,
      cwd=cwd,
      capture_output=True,
      text=True,
      check=False,
    )
    seconds = time.perf_counter() - start
    with open(rss_file) as f:
      peak_kib = int(f.read())
  return Measured(proc.returncode, proc.stdout, proc.stderr, peak_kib / 1024.0, seconds)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.set_defaults(**DEFAULT_SHAPES)
  parser.add_argument("--short-seconds", type=float, default=60.0, help="the short clip")
  parser.add_argument("--long-seconds", type=float, default=600.0, help="the long clip")
  parser.add_argument("--clip-size", default="64x48", help="clip WIDTHxHEIGHT")
  parser.add_argument("--fps", type=float, default=25.0)
  parser.add_argument("--few-images", type=int, default=100)
  parser.add_argument("--many-images", type=int, default=2000)
  parser.add_argument("--image-size", default="64x48", help="image WIDTHxHEIGHT")
  parser.add_argument(
    "--kinds", nargs="+", choices=("video", "images"), default=["video", "images"]
  )


def make_clip(path: str, seconds: float, size: str, fps: float) -> str:
  """An H.264 test-pattern clip with an AAC sine sound track."""
  cmd = [probe.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
  cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
  cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
  cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", path]
  subprocess.run(cmd, check=True)
  return path


def make_images(folder: str, count: int, size: str) -> str:
  from PIL import Image

  width, height = (int(v) for v in size.lower().split("x"))
  os.makedirs(folder)
  rng = np.random.default_rng(0)
  for i in range(count):
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.png"))
  return folder


def make_workdir(workdir: str, args: argparse.Namespace) -> str:
  """A workdir holding a randomly initialised generator of the benchmark's shape."""
  config = shapes.config_from_args(args)
  _, variables = shapes.random_generator(config)
  checkpoint.save_generator(workdir, config, variables)
  return workdir


def colorize(workdir: str, source: str, output: str, batch_size: int) -> Measured:
  cmd = [sys.executable, "-m", "pix2pix_jax.colorize.main", "--workdir", workdir, source]
  cmd += ["--output", output, "--batch-size", str(batch_size), "--no-progress"]
  result = run_measured(cmd)
  if result.returncode:
    raise RuntimeError(f"colourising {source} failed: {probe.last_line(result.stderr)}")
  return result


def run(args: argparse.Namespace) -> list[dict]:
  machine = {
    "cpu": _cpu_name(),
    "cpu_count": os.cpu_count(),
    "render_size": args.render_size,
    "ngf": args.ngf,
    "num_downs": args.num_downs,
    "batch_size": args.batch_size,
  }
  records = []
  with tempfile.TemporaryDirectory() as tmp:
    workdir = make_workdir(os.path.join(tmp, "workdir"), args)
    cases = {}
    if "video" in args.kinds:
      cases["video"] = [
        (f"{s:g} s", make_clip(os.path.join(tmp, f"{s:g}s.mp4"), s, args.clip_size, args.fps))
        for s in (args.short_seconds, args.long_seconds)
      ]
    if "images" in args.kinds:
      cases["images"] = [
        (f"{n} images", make_images(os.path.join(tmp, f"{n}images"), n, args.image_size))
        for n in (args.few_images, args.many_images)
      ]
    for kind, ((small_name, small), (large_name, large)) in cases.items():
      out = os.path.join(tmp, f"out_{kind}")
      ext = ".mp4" if kind == "video" else ""
      a = colorize(workdir, small, out + "_small" + ext, args.batch_size)
      b = colorize(workdir, large, out + "_large" + ext, args.batch_size)
      records.append(
        {
          "bench": f"memory_{kind}",
          **machine,
          "clip_size" if kind == "video" else "image_size": (
            args.clip_size if kind == "video" else args.image_size
          ),
          "small": small_name,
          "large": large_name,
          "small_peak_rss_mb": round(a.peak_rss_mb, 1),
          "large_peak_rss_mb": round(b.peak_rss_mb, 1),
          "large_over_small": round(b.peak_rss_mb / a.peak_rss_mb, 3),
          "small_seconds": round(a.seconds, 1),
          "large_seconds": round(b.seconds, 1),
          "loadavg_1m": os.getloadavg()[0],
        }
      )
  return records


def _cpu_name() -> str:
  return xla_flags.cpuinfo_field("model name") or platform.processor() or platform.machine()
