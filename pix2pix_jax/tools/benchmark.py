"""pix2pix-benchmark: speed benchmarks printing one JSON line per measurement.

  pix2pix-benchmark train --batch-size 4 --render-size 256
  pix2pix-benchmark infer --batch-size 4 --render-size 256
  pix2pix-benchmark input --source samples --render-size 256 --load 286
  pix2pix-benchmark video --seconds 20
  pix2pix-benchmark compare PEER_SCRIPT --batch-sizes 1 4
  pix2pix-benchmark accelerator-report --output report.md --peer PEER_SCRIPT
  pix2pix-benchmark memory --short-seconds 60 --long-seconds 600

Times are medians over `--steps` runs after a warm-up; compile time is reported
separately. GFLOP/s comes from XLA's cost analysis of the compiled program; on CPU
`ceiling_fraction` divides it by a large matmul's rate measured in the same process, on
accelerators `mfu` divides it by the device kind's dense peak in the measured dtype; there
float32 runs at full float32 precision (no TF32), as the PyTorch peer's float32 does.
`loadavg_1m` is recorded because other processes on the machine change CPU timings a lot:
compare runs side by side.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import cli, config_lib, parallel, train_step, xla_flags
from pix2pix_jax.tools import shapes

# Dense peak FLOP/s by device kind (vendor datasheets; SXM parts unless named), bfloat16 and
# plain float32 (no TF32), for MFU on accelerators. A kind matches its longest listed prefix.
PEAK_FLOPS = {
  "NVIDIA H100": {"bfloat16": 989e12, "float32": 67e12},
  "NVIDIA H100 PCIe": {"bfloat16": 756e12, "float32": 51e12},
  "NVIDIA H100 NVL": {"bfloat16": 835e12, "float32": 60e12},
  "NVIDIA H200": {"bfloat16": 989e12, "float32": 67e12},
  "NVIDIA GH200": {"bfloat16": 989e12, "float32": 67e12},
  "NVIDIA A100": {"bfloat16": 312e12, "float32": 19.5e12},
  "NVIDIA L4": {"bfloat16": 121e12, "float32": 30.3e12},
  "TPU v4": {"bfloat16": 275e12},
  "TPU v5 lite": {"bfloat16": 197e12},
  "TPU v5": {"bfloat16": 459e12},
  "TPU v6 lite": {"bfloat16": 918e12},
}


def timed(fn: Callable[[], Any], steps: int) -> tuple[float, float]:
  """(first call seconds, median of `steps` later calls); each call is waited for."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return first, statistics.median(times)


def matmul_ceiling(dtype=jnp.float32, n: int = 2048) -> float:
  """FLOP/s of a large square matmul through XLA on the default device."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  _, seconds = timed(lambda: f(a), 5)
  return 2 * n**3 / seconds


def compile_with_flops(jitted, *args) -> tuple[Any, float, float]:
  """(the compiled program, XLA's FLOP count of one call, compile seconds).

  Timing calls the returned program itself, so nothing is compiled twice.
  """
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return compiled, float((cost or {}).get("flops", 0.0)), compile_s


def peak_flops(device_kind: str, dtype: str = "bfloat16") -> float | None:
  """Dense peak of one device of this kind in `dtype`, or None when unknown."""
  matches = [k for k in PEAK_FLOPS if device_kind.startswith(k)]
  return PEAK_FLOPS[max(matches, key=len)].get(dtype) if matches else None


def full_precision(config) -> contextlib.AbstractContextManager:
  """Where float32 is measured on an accelerator, XLA's float32 matmuls and convolutions at full
  precision (GPUs would otherwise use TF32): the same arithmetic as the PyTorch peer's float32
  and as a CPU. Nothing changes on CPU or for bfloat16."""
  if config.model.dtype != "float32" or jax.default_backend() == "cpu":
    return contextlib.nullcontext()
  return jax.default_matmul_precision("float32")


def describe(config, args, images_per_call: int, seconds, flops, compile_s) -> dict:
  device = jax.devices()[0]
  achieved = flops / seconds
  record = {
    "device": device.device_kind,
    "platform": device.platform,
    "devices": jax.device_count(),
    "batch_size": config.batch_size,
    "render_size": config.data.crop_size,
    "dtype": config.model.dtype,
    "conv": config.model.conv,
    "img_per_s": images_per_call / seconds,
    "step_s": seconds,
    "steps": args.steps,
    "compile_s": compile_s,
    "gflop_per_img": flops / images_per_call / 1e9,
    "gflop_per_s": achieved / 1e9,
    "loadavg_1m": os.getloadavg()[0],
  }
  if device.platform == "cpu":
    record["matmul_gflop_per_s"] = matmul_ceiling(jnp.dtype(config.model.dtype)) / 1e9
    record["ceiling_fraction"] = achieved / (record["matmul_gflop_per_s"] * 1e9)
  else:
    peak = peak_flops(device.device_kind, config.model.dtype)
    record["peak_tflop_per_s"] = peak * jax.device_count() / 1e12 if peak else None
    record["mfu"] = achieved / (peak * jax.device_count()) if peak else None
  return record


def bench_train(args) -> dict:
  config = shapes.config_from_args(args)
  size, batch_size = config.data.crop_size, config.batch_size
  mesh = parallel.make_mesh()
  nets = train_step.make_networks(config, steps_per_epoch=1000)
  init = jax.jit(
    lambda key: train_step.init_state(nets, key, size), out_shardings=parallel.replicated(mesh)
  )
  state = init(jax.random.key(0))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
  batch = parallel.to_global({"image": images}, mesh)
  key = jax.random.key(0)
  step_fn = train_step.compile_step(nets, mesh)
  with full_precision(config):
    step, flops, compile_s = compile_with_flops(step_fn, state, batch, key)
  holder = [state]

  def one():
    holder[0], metrics = step(holder[0], batch, key)
    return metrics

  _, seconds = timed(one, args.steps)
  return {"bench": "train", **describe(config, args, batch_size, seconds, flops, compile_s)}


def bench_infer(args) -> dict:
  """The generator's forward pass in eval mode (running BatchNorm statistics, no dropout)."""
  config = shapes.config_from_args(args)
  size, batch_size = config.data.crop_size, config.batch_size
  mesh = parallel.make_mesh()
  generator, variables = shapes.random_generator(config)
  gray = jax.device_put(
    jnp.zeros((batch_size, size, size, 1), jnp.float32), parallel.batch_sharding(mesh)
  )
  forward = jax.jit(
    lambda v, x: generator.apply(v, x, train=False),
    compiler_options=xla_flags.forward_compiler_options(),
  )
  with full_precision(config):
    forward, flops, compile_s = compile_with_flops(forward, variables, gray)
  _, seconds = timed(lambda: forward(variables, gray), args.steps)
  return {"bench": "infer", **describe(config, args, batch_size, seconds, flops, compile_s)}


def bench_input(args) -> dict:
  from pix2pix_jax import input_pipeline

  config = config_lib.apply_overrides(
    shapes.config_from_args(args),
    {"data.source": args.source, "data.folder": args.folder, "data.load_size": args.load},
  )
  it = input_pipeline.create_train_iterator(config)
  next(it)  # start-up (file scan, first decode) is not throughput
  start = time.perf_counter()
  n = 0
  while n < args.images:
    n += len(next(it)["image"])
  seconds = time.perf_counter() - start
  return {
    "bench": "input",
    "source": args.source,
    "render_size": config.data.crop_size,
    "load": args.load,
    "batch_size": config.batch_size,
    "img_per_s": n / seconds,
  }


def bench_video(args) -> list[dict]:
  from pix2pix_jax.tools import video_benchmark

  return video_benchmark.run(args)


def bench_memory(args) -> list[dict]:
  from pix2pix_jax.tools import memory_benchmark

  return memory_benchmark.run(args)


def bench_accelerator_report(args) -> list[dict]:
  from pix2pix_jax.tools import accelerator_report

  return accelerator_report.run(args)


def _run_peer(args, config, *extra: str) -> dict:
  """The peer's JSON record for `config`'s shapes; `extra`: more of its flags."""
  cmd = [sys.executable, args.peer, "--batch", str(config.batch_size)]
  cmd += ["--res", str(config.data.crop_size), "--steps", str(args.steps), "--in-ch", "1"]
  cmd += ["--out-ch", "3" if config.color_space == "rgb" else "2", *extra]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def bench_compare(args) -> Iterator[dict]:
  """Ours and the PyTorch peer on the same shapes, in one run, with ratios; one record per batch
  size, yielded as soon as it is measured. The peer runs `--peer-runs` times (before and after
  ours) and its best figure is the one compared, since its speed varies from run to run."""
  for batch in args.batch_sizes:
    sub = argparse.Namespace(**{**vars(args), "batch_size": batch})
    config = shapes.config_from_args(sub)
    peers = [_run_peer(args, config)]
    ours_train = bench_train(sub)
    ours_infer = bench_infer(sub)
    peers += [_run_peer(args, config) for _ in range(args.peer_runs - 1)]
    peer = {k: max(p[k] for p in peers) for k in ("train_img_per_s", "infer_img_per_s")}
    yield {
      "bench": "compare",
      "batch_size": batch,
      "render_size": config.data.crop_size,
      "device": ours_train["device"],
      "ours_train_img_per_s": ours_train["img_per_s"],
      "peer_train_img_per_s": peer["train_img_per_s"],
      "train_ratio": ours_train["img_per_s"] / peer["train_img_per_s"],
      "ours_infer_img_per_s": ours_infer["img_per_s"],
      "peer_infer_img_per_s": peer["infer_img_per_s"],
      "infer_ratio": ours_infer["img_per_s"] / peer["infer_img_per_s"],
      "ours_train_ceiling_fraction": ours_train.get("ceiling_fraction"),
      "ours_infer_ceiling_fraction": ours_infer.get("ceiling_fraction"),
      "ours_compile_s": {"train": ours_train["compile_s"], "infer": ours_infer["compile_s"]},
      "peer_runs": len(peers),
      "peer_threads": peers[0].get("threads"),
      "loadavg_1m": os.getloadavg()[0],
    }


RUNNERS = {
  "train": bench_train,
  "infer": bench_infer,
  "input": bench_input,
  "video": bench_video,
  "compare": bench_compare,
  "accelerator-report": bench_accelerator_report,
  "memory": bench_memory,
}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="pix2pix-benchmark", description=__doc__.split("\n")[0])
  kinds = parser.add_subparsers(dest="kind", required=True)
  helps = {
    "train": "img/s of the jit'd training step",
    "infer": "img/s of the generator's forward pass",
    "input": "img/s of the input pipeline",
    "video": "decode, model, encode and end-to-end frames/s, and peak memory",
    "compare": "train and infer against a PyTorch pix2pix script, side by side, as ratios",
    "memory": "peak RSS of pix2pix-colorize on a long clip vs a short one, many images vs few",
  }
  for kind, text in helps.items():
    sub = kinds.add_parser(kind, help=text, description=text)
    shapes.add_arguments(sub)
    sub.add_argument("--steps", type=int, default=5, help="timed calls after a warm-up call")
    if kind == "input":
      sub.add_argument("--source", default="samples", help="samples | folder | tfds")
      sub.add_argument("--folder", default=None)
      sub.add_argument("--load", type=int, default=286, help="resize before the crop")
      sub.add_argument("--images", type=int, default=200, help="images to time")
    if kind == "video":
      sub.add_argument("--seconds", type=float, default=20.0, help="clip length")
      sub.add_argument("--clip-size", default="320x240", help="clip WIDTHxHEIGHT")
      sub.add_argument("--preset", default="veryfast", help="x264 preset")
      sub.add_argument("--workdir", default=None, help="a trained workdir (else random init)")
    if kind == "memory":
      from pix2pix_jax.tools import memory_benchmark

      memory_benchmark.add_arguments(sub)
    if kind == "compare":
      sub.add_argument("peer", help="the PyTorch script to compare with (e.g. torch_pix2pix.py)")
      sub.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
      sub.add_argument("--peer-runs", type=int, default=2, help="best of this many PyTorch runs")
  from pix2pix_jax.tools import accelerator_report

  text = "train, infer and video rates, the PyTorch peer, versions: a markdown report"
  report = kinds.add_parser("accelerator-report", help=text, description=text)
  accelerator_report.add_arguments(report)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  cli.configure()
  result = RUNNERS[args.kind](args)
  for record in [result] if isinstance(result, dict) else result:
    print(json.dumps(record), flush=True)
  return 0


def run() -> None:
  """Console entry point (pix2pix-benchmark)."""
  cli.run(main)


if __name__ == "__main__":
  run()
