"""pix2pix-benchmark accelerator-report: what this machine's accelerator does, in one markdown file.

Train and infer speed against a PyTorch peer, the video pipeline and the 1080p archive path, each
against its target, within a time budget; what it measures and needs: docs/performance.md.
"""

import argparse
import datetime
import functools
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import jax

from pix2pix_jax import files
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import chunk_plan, memory, probe, sample_clip, writer
from pix2pix_jax.tools import shapes
from pix2pix_jax.tools.bench import host, speed
from pix2pix_jax.tools.bench import video as video_benchmark

DTYPES = ("float32", "bfloat16")
LIBRARIES = (
  "jax",
  "jaxlib",
  "jax-cuda13-plugin",
  "jax-cuda12-plugin",
  "libtpu",
  "flax",
  "optax",
  "orbax-checkpoint",
  "ml-collections",
  "numpy",
  "imageio-ffmpeg",
)
# Targets, as ratios measured in one run: ours over the peer in the same precision
# at these batch sizes, and video end to end over model-only.
PEER_TARGET, PEER_TARGET_BATCHES, VIDEO_TARGET = 1.2, (1, 16), 0.9
ARCHIVE_TARGET_FPS = 290.0  # 1080p end to end, chunked, on one host


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--output", required=True, help="the markdown report to write")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
  parser.add_argument("--peer", default=None, help="PyTorch peer script (torch_pix2pix.py)")
  parser.add_argument("--size", type=int, default=256, help="square model input size")
  parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
  parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
  parser.add_argument("--steps", type=int, default=10, help="timed calls after a warm-up call")
  parser.add_argument("--ngf", type=int, default=None, help="generator width (default 64)")
  parser.add_argument("--ndf", type=int, default=None, help="discriminator width (default 64)")
  parser.add_argument("--num-downs", type=int, default=None, help="U-Net levels (default 8)")
  parser.add_argument("--video-seconds", type=float, default=20.0, help="sample clip length")
  parser.add_argument("--clip-size", default="640x360", help="sample clip WIDTHxHEIGHT")
  parser.add_argument("--video-batch", type=int, default=16, help="frames per model call")
  parser.add_argument("--archive-clip-size", default="1920x1080", help="archive clip WxH")
  parser.add_argument("--archive-seconds", type=float, default=20.0, help="archive clip length")
  parser.add_argument(
    "--archive-workers", type=int, default=0, help="chunked workers (0: the default)"
  )
  parser.add_argument(
    "--budget-minutes", type=float, default=6.0, help="start no measurement after this long"
  )


def _shape_args(args: argparse.Namespace, batch: int, dtype: str) -> argparse.Namespace:
  """The flags of `shapes.add_arguments` (and --steps) for one measurement."""
  return argparse.Namespace(
    config=None,
    batch_size=batch,
    render_size=args.size,
    ngf=args.ngf,
    ndf=args.ndf,
    num_downs=args.num_downs,
    conv=None,
    dtype=dtype,
    color_space=None,
    steps=args.steps,
  )


class Budget:
  """Runs measurements until `minutes` have passed; a failure is recorded, not raised."""

  def __init__(self, minutes: float):
    self.start = time.monotonic()
    self.seconds = minutes * 60.0

  def elapsed(self) -> float:
    return time.monotonic() - self.start

  def measure(self, name: str, fn: Callable[[], Any]) -> Any:
    """fn()'s result, or {"skipped": reason} when the budget is spent or fn fails."""
    if self.elapsed() > self.seconds:
      return {"skipped": "time budget spent"}
    try:
      return fn()
    except Exception as e:  # noqa: BLE001 (one failed measurement must not lose the report)
      traceback.print_exc()
      print(f"accelerator-report: {name} failed: {e}", file=sys.stderr, flush=True)
      return {"skipped": f"failed: {type(e).__name__}: {probe.last_line(str(e))}"}


def peer_device() -> str:
  """The peer's --device for this machine's JAX platform."""
  return {"gpu": "cuda", "cpu": "cpu"}.get(jax.default_backend(), "")


def _peer(args, batch: int, dtype: str) -> dict:
  if not args.peer:
    return {"skipped": "no --peer"}
  if not peer_device():
    return {"skipped": f"no PyTorch device for {jax.default_backend()}"}
  config = shapes.config_from_args(_shape_args(args, batch, dtype))
  try:
    return speed.run_peer(args, config, "--device", peer_device(), "--dtype", dtype)
  except subprocess.CalledProcessError as e:
    raise RuntimeError(f"peer exited {e.returncode}: {probe.last_line(e.stderr)}") from e


def _video(args) -> dict:
  """Video rates with the report's generator (random weights, float32, default precision, as
  pix2pix-colorize runs it) on a rendered sample clip."""
  memory.tune_memory()  # as the colourising commands do
  config = shapes.config_from_args(_shape_args(args, args.video_batch, "float32"))
  width, height = (int(v) for v in args.clip_size.lower().split("x"))
  _, variables = shapes.random_generator(config)
  colorizer = colorizer_lib.Colorizer.from_config(config, variables, batch_size=args.video_batch)
  with tempfile.TemporaryDirectory() as tmp:
    clip = sample_clip.make_sample_clip(
      os.path.join(tmp, "clip.mp4"), seconds=args.video_seconds, size=(width, height)
    )
    rates = video_benchmark.measure_rates(colorizer, clip, writer.EncodeOptions(), repeats=3)
  return {
    "bench": "report_video",
    "clip_size": f"{width}x{height}",
    "render_size": args.size,
    "batch_size": colorizer.batch_size,
    "frames": rates["end_to_end"]["frames"],
    **{f"{name}_fps": rec["fps"] for name, rec in rates.items()},
    "e2e_over_model": rates["end_to_end"]["fps"] / rates["model"]["fps"],
  }


def _archive(args) -> dict:
  """The archive path with the video's generator: a clip colourised end to end by one pipeline
  and by the default chunked workers (`host.serial_vs_chunked`)."""
  memory.tune_memory()
  config = shapes.config_from_args(_shape_args(args, args.video_batch, "float32"))
  width, height = (int(v) for v in args.archive_clip_size.lower().split("x"))
  _, variables = shapes.random_generator(config)
  colorizer = colorizer_lib.Colorizer.from_config(config, variables, batch_size=args.video_batch)
  workers = args.archive_workers or chunk_plan.default_workers(width, height, args.video_batch)
  chunk_seconds = host.comparison_chunk_seconds(args.archive_seconds, workers)
  with tempfile.TemporaryDirectory() as tmp:
    clip = sample_clip.make_sample_clip(
      os.path.join(tmp, "clip.mp4"), seconds=args.archive_seconds, size=(width, height)
    )
    rates = host.serial_vs_chunked(colorizer, clip, workers, chunk_seconds, writer.EncodeOptions())
  return {
    "bench": "report_archive",
    "clip_size": f"{width}x{height}",
    "render_size": args.size,
    "batch_size": colorizer.batch_size,
    "workers": workers,
    "chunk_seconds": chunk_seconds,
    **rates,
  }


def _command_output(cmd: list[str]) -> str | None:
  """The first line of a command's output, or None when it cannot run."""
  if not shutil.which(cmd[0]) and not os.path.exists(cmd[0]):
    return None
  try:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  return out.strip().splitlines()[0] if out.strip() else None


def environment() -> dict[str, str]:
  """Device, driver and library versions, as the table shows them."""
  device = jax.devices()[0]
  info = {
    "device": f"{device.device_kind} x{jax.device_count()} ({device.platform})",
    "platform version": getattr(getattr(device, "client", None), "platform_version", None),
    "driver": _command_output(
      ["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"]
    ),
    "host": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
  }
  for name in LIBRARIES:
    try:
      info[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  try:
    info["ffmpeg"] = _command_output([probe.ffmpeg_exe(), "-version"])
  except Exception:  # noqa: BLE001 (a missing ffmpeg shows as n/a; the video row says why)
    info["ffmpeg"] = None
  return {k: ("n/a" if v is None else str(v)) for k, v in info.items()}


def measure(args) -> dict[str, Any]:
  """Every measurement: {"environment", "video", "archive", "rows": [{dtype, batch, train,
  infer, peer}]}."""
  budget = Budget(args.budget_minutes)
  results: dict[str, Any] = {"environment": environment()}
  results["video"] = budget.measure("video", lambda: _video(args))
  results["archive"] = budget.measure("archive", lambda: _archive(args))
  rows = []
  for batch in args.batches:
    for dtype in args.dtypes:
      sub = _shape_args(args, batch, dtype)
      row = {"dtype": dtype, "batch": batch}
      name = f"{dtype} batch {batch}"
      row["train"] = budget.measure(f"train {name}", functools.partial(speed.bench_train, sub))
      row["infer"] = budget.measure(f"infer {name}", functools.partial(speed.bench_infer, sub))
      row["peer"] = budget.measure(f"peer {name}", functools.partial(_peer, args, batch, dtype))
      rows.append(row)
  results["rows"] = rows
  results["minutes"] = budget.elapsed() / 60.0
  return results


# --- The markdown ---------------------------------------------------------------------------


def _number(value: float | None, digits: int = 3) -> str:
  if value is None:
    return "n/a"
  return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"


def _get(record: dict, key: str) -> float | None:
  return record.get(key) if "skipped" not in record else None


def _ratio(ours: float | None, peer: float | None) -> float | None:
  return ours / peer if ours and peer else None


def ratios(row: dict) -> dict[str, float | None]:
  """Ours over the peer's img/s, train and infer, for one (dtype, batch) row."""
  return {
    kind: _ratio(_get(row[kind], "img_per_s"), _get(row["peer"], f"{kind}_img_per_s"))
    for kind in ("train", "infer")
  }


def _cell(record: dict, key: str, digits: int = 3) -> str:
  if "skipped" in record:
    return record["skipped"]
  return _number(record.get(key), digits)


def _percent(value: float | None) -> str:
  return "n/a" if value is None else f"{100 * value:.1f}%"


def targets(results: dict) -> list[tuple[str, float | None]]:
  """(target, measured ratio) for each speed target."""
  out = []
  for row in results["rows"]:
    if row["batch"] in PEER_TARGET_BATCHES:
      for kind, value in ratios(row).items():
        name = f"{kind} >= {PEER_TARGET}x the peer, {row['dtype']}, batch {row['batch']}"
        out.append((name, value))
  video = results["video"]
  out.append((f"video end to end >= {VIDEO_TARGET}x model-only", _get(video, "e2e_over_model")))
  archive = results.get("archive", {"skipped": "not measured"})
  name = f"archive: 1080p chunked end to end >= {ARCHIVE_TARGET_FPS:g} frames/s"
  out.append((name, _get(archive, "chunked_fps")))
  return out


def _target_met(name: str, value: float | None) -> str:
  if value is None:
    return "not measured"
  limits = {"video": VIDEO_TARGET, "archive": ARCHIVE_TARGET_FPS}
  return "yes" if value >= limits.get(name.split()[0].rstrip(":"), PEER_TARGET) else "no"


def _header(results: dict) -> list[str]:
  env = results["environment"]
  return [
    f"# pix2pix_jax on {env['device']}",
    "",
    f"`pix2pix-benchmark accelerator-report`, {datetime.date.today().isoformat()}, "
    f"{results['minutes']:.1f} min.",
    "",
    "| | |",
    "|---|---|",
    *[f"| {k} | {v} |" for k, v in env.items()],
  ]


def _speed_section(results: dict, args: argparse.Namespace) -> list[str]:
  width = f"ngf {args.ngf or 64}, ndf {args.ndf or 64}, num_downs {args.num_downs or 8}"
  lines = [
    "",
    f"## Training and inference, {args.size}x{args.size} ({width}, 1 -> 3 channels)",
    "",
    f"img/s: median of {args.steps} calls after a warm-up call; ratio: ours over the PyTorch "
    "peer in the same precision (float32: full float32 in both, no TF32; bfloat16: our bf16 "
    "compute with float32 parameters, the peer's autocast). GFLOP/s from XLA's cost analysis, "
    "MFU against the device's dense peak in that dtype.",
    "",
    "| dtype | batch | train img/s | peer train | ratio | infer img/s | peer infer | ratio "
    "| compile s train / infer | GFLOP/s train / infer | MFU train / infer |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for row in results["rows"]:
    train, infer, peer = row["train"], row["infer"], row["peer"]
    r = ratios(row)
    lines.append(
      f"| {row['dtype']} | {row['batch']} | {_cell(train, 'img_per_s')} "
      f"| {_cell(peer, 'train_img_per_s')} | {_number(r['train'], 2)} "
      f"| {_cell(infer, 'img_per_s')} | {_cell(peer, 'infer_img_per_s')} "
      f"| {_number(r['infer'], 2)} "
      f"| {_cell(train, 'compile_s')} / {_cell(infer, 'compile_s')} "
      f"| {_cell(train, 'gflop_per_s')} / {_cell(infer, 'gflop_per_s')} "
      f"| {_percent(_get(train, 'mfu'))} / {_percent(_get(infer, 'mfu'))} |"
    )
  peers = [row["peer"] for row in results["rows"] if "skipped" not in row["peer"]]
  if peers:
    lines += ["", f"Peer: torch {peers[0].get('torch', 'n/a')} on {peers[0].get('device')}."]
  return lines


def _video_section(results: dict, args: argparse.Namespace) -> list[str]:
  video = results["video"]
  lines = [
    "",
    "## Video pipeline (float32 generator, random weights, H.264 veryfast)",
    "",
    "| clip | render | batch | decode fps | model-only fps | encode fps | end to end fps "
    "| end to end / model |",
    "|---|---|---|---|---|---|---|---|",
  ]
  if "skipped" in video:
    lines.append(
      f"| {args.clip_size} | {args.size} | {args.video_batch} | {video['skipped']} | | | | |"
    )
  else:
    lines.append(
      f"| {video['clip_size']} | {video['render_size']} | {video['batch_size']} "
      f"| {_number(video['decode_fps'])} | {_number(video['model_fps'])} "
      f"| {_number(video['encode_fps'])} | {_number(video['end_to_end_fps'])} "
      f"| {_number(video['e2e_over_model'], 2)} |"
    )
  return lines


def _archive_section(results: dict, args: argparse.Namespace) -> list[str]:
  archive = results.get("archive", {"skipped": "not measured"})
  lines = [
    "",
    "## Archive: one pipeline against chunked workers (the video's generator, veryfast)",
    "",
    "| clip | workers | chunk s | serial fps | chunked fps | chunked / serial "
    "| CPU ms a frame serial / chunked |",
    "|---|---|---|---|---|---|---|",
  ]
  if "skipped" in archive:
    lines.append(f"| {args.archive_clip_size} | {archive['skipped']} | | | | | |")
  else:
    lines.append(
      f"| {archive['clip_size']} | {archive['workers']} | {_number(archive['chunk_seconds'])} "
      f"| {_number(archive['serial_fps'])} | {_number(archive['chunked_fps'])} "
      f"| {_number(archive['chunked_over_serial'], 2)} "
      f"| {_number(archive['serial_cpu_ms_per_frame'])} / "
      f"{_number(archive['chunked_cpu_ms_per_frame'])} |"
    )
  return lines


def _targets_section(results: dict) -> list[str]:
  lines = [
    "",
    "## Targets (one run, this device)",
    "",
    "| target | measured | met |",
    "|---|---|---|",
  ]
  for name, value in targets(results):
    lines.append(f"| {name} | {_number(value, 2)} | {_target_met(name, value)} |")
  return lines


def markdown(results: dict, args: argparse.Namespace) -> str:
  """The report: environment, train/infer, video, archive and targets tables."""
  lines = [
    *_header(results),
    *_speed_section(results, args),
    *_video_section(results, args),
    *_archive_section(results, args),
    *_targets_section(results),
  ]
  return "\n".join(lines) + "\n"


def records(results: dict) -> list[dict]:
  """The measurements as JSON-able records, one per line of the command's output."""
  out = [{"bench": "report_environment", **results["environment"]}]
  out.append({"bench": "report_video", **results["video"]})
  out.append({"bench": "report_archive", **results["archive"]})
  for row in results["rows"]:
    out.append({"bench": "report_row", **row, **{f"{k}_ratio": v for k, v in ratios(row).items()}})
  return out


def run(args: argparse.Namespace) -> list[dict]:
  """Measures, writes `args.output` (refused up front if it exists without --overwrite), and
  returns the records."""
  files.check_output(args.output, overwrite=args.overwrite)
  # Leaves the peer's process room on the device: JAX would otherwise take 75% of it up front.
  os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")
  results = measure(args)
  with files.atomic_output(args.output, overwrite=args.overwrite) as tmp:
    with open(tmp, "w") as f:
      f.write(markdown(results, args))
  return records(results)
