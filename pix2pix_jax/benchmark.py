"""Speed benchmarks printing one JSON line per measurement.

  python -m pix2pix_jax.benchmark train --batch 4 --res 256
  python -m pix2pix_jax.benchmark infer --batch 4 --res 256
  python -m pix2pix_jax.benchmark input --source samples --res 256
  python -m pix2pix_jax.benchmark video --seconds 20
  python -m pix2pix_jax.benchmark compare --peer ../shared/bench/torch_pix2pix.py --batch-sizes 1 4

Times are medians over `--steps` runs after a warm-up; compile time is reported
separately. GFLOP/s comes from XLA's cost analysis of the compiled program; on CPU
`ceiling_fraction` divides it by a large matmul's rate measured in the same process, on
accelerators `mfu` divides it by the device kind's dense bf16 peak. `loadavg_1m` is recorded
because other processes on the machine change CPU timings a lot: compare runs side by side.
"""

import argparse
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

from pix2pix_jax import config_files, parallel, train, xla_flags

REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

# Dense bf16 peak FLOP/s by device kind (vendor figures), for MFU on accelerators.
BF16_PEAK_FLOPS = {
  "NVIDIA H100 80GB HBM3": 989e12,
  "NVIDIA H100": 989e12,
  "NVIDIA H200": 989e12,
  "NVIDIA A100-SXM4-80GB": 312e12,
  "NVIDIA A100-SXM4-40GB": 312e12,
  "TPU v4": 275e12,
  "TPU v5 lite": 197e12,
  "TPU v5": 459e12,
}


def bench_config(args: argparse.Namespace):
  config = config_files.load(os.path.join(REPO_CONFIGS, "default.py"))
  return config_files.apply_overrides(
    config,
    {
      "color_space": args.color_space,
      "batch_size": args.batch,
      "data.crop_size": args.res,
      "data.load_size": args.res,
      "model.ngf": args.ngf,
      "model.ndf": args.ndf,
      "model.num_downs": args.num_downs,
      "model.conv": args.conv,
      "model.dtype": args.dtype,
    },
  )


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


def peak_flops(device_kind: str) -> float | None:
  """Dense bf16 peak of one device of this kind, or None when unknown."""
  if device_kind in BF16_PEAK_FLOPS:
    return BF16_PEAK_FLOPS[device_kind]
  matches = [k for k in BF16_PEAK_FLOPS if device_kind.startswith(k)]
  return BF16_PEAK_FLOPS[max(matches, key=len)] if matches else None


def describe(args, images_per_call: int, seconds: float, flops: float, compile_s: float) -> dict:
  device = jax.devices()[0]
  achieved = flops / seconds
  record = {
    "device": device.device_kind,
    "platform": device.platform,
    "devices": jax.device_count(),
    "batch": args.batch,
    "res": args.res,
    "dtype": args.dtype,
    "conv": args.conv,
    "img_per_s": images_per_call / seconds,
    "step_s": seconds,
    "steps": args.steps,
    "compile_s": compile_s,
    "gflop_per_img": flops / images_per_call / 1e9,
    "gflop_per_s": achieved / 1e9,
    "loadavg_1m": os.getloadavg()[0],
  }
  if device.platform == "cpu":
    record["matmul_gflop_per_s"] = matmul_ceiling(jnp.dtype(args.dtype)) / 1e9
    record["ceiling_fraction"] = achieved / (record["matmul_gflop_per_s"] * 1e9)
  else:
    # Against the dense bf16 peak whatever --dtype is (float32 matmuls may run as TF32 there).
    peak = peak_flops(device.device_kind)
    record["peak_tflop_per_s"] = peak * jax.device_count() / 1e12 if peak else None
    record["mfu"] = achieved / (peak * jax.device_count()) if peak else None
  return record


def bench_train(args) -> dict:
  config = bench_config(args)
  mesh = parallel.make_mesh()
  nets = train.make_networks(config, steps_per_epoch=1000)
  init = jax.jit(
    lambda key: train.init_state(nets, key, args.res), out_shardings=parallel.replicated(mesh)
  )
  state = init(jax.random.key(0))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.batch, args.res, args.res, 3), dtype=np.uint8)
  batch = parallel.to_global({"image": images}, mesh)
  key = jax.random.key(0)
  step, flops, compile_s = compile_with_flops(train.compile_step(nets, mesh), state, batch, key)
  holder = [state]

  def one():
    holder[0], metrics = step(holder[0], batch, key)
    return metrics

  _, seconds = timed(one, args.steps)
  return {"bench": "train", **describe(args, args.batch, seconds, flops, compile_s)}


def bench_infer(args) -> dict:
  """The generator's forward pass in eval mode (running BatchNorm statistics, no dropout)."""
  config = bench_config(args)
  mesh = parallel.make_mesh()
  nets = train.make_networks(config, steps_per_epoch=1000)
  state = jax.jit(lambda key: train.init_state(nets, key, args.res))(jax.random.key(0))
  gray = jax.device_put(
    jnp.zeros((args.batch, args.res, args.res, 1), jnp.float32), parallel.batch_sharding(mesh)
  )
  variables = state.generator_variables
  forward = jax.jit(
    lambda v, x: nets.generator.apply(v, x, train=False),
    compiler_options=xla_flags.forward_compiler_options(),
  )
  forward, flops, compile_s = compile_with_flops(forward, variables, gray)
  _, seconds = timed(lambda: forward(variables, gray), args.steps)
  return {"bench": "infer", **describe(args, args.batch, seconds, flops, compile_s)}


def bench_input(args) -> dict:
  from pix2pix_jax import input_pipeline

  config = config_files.apply_overrides(
    bench_config(args),
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
    "res": args.res,
    "load": args.load,
    "batch": args.batch,
    "img_per_s": n / seconds,
  }


def bench_video(args) -> list[dict]:
  from pix2pix_jax.tools import video_benchmark

  return video_benchmark.run(args)


def _run_peer(args, batch: int) -> dict:
  cmd = [sys.executable, args.peer, "--batch", str(batch), "--res", str(args.res)]
  cmd += ["--steps", str(args.steps), "--in-ch", "1"]
  cmd += ["--out-ch", "3" if args.color_space == "rgb" else "2"]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def bench_compare(args) -> Iterator[dict]:
  """Ours and the PyTorch peer on the same shapes, in one run, with ratios; one record per batch
  size, yielded as soon as it is measured. The peer runs `--peer-runs` times (before and after
  ours) and its best figure is the one compared: on this VM its speed swings by up to 1.5x
  from run to run, and the ratio should not profit from that."""
  for batch in args.batch_sizes:
    sub = argparse.Namespace(**{**vars(args), "batch": batch})
    peers = [_run_peer(args, batch)]
    ours_train = bench_train(sub)
    ours_infer = bench_infer(sub)
    peers += [_run_peer(args, batch) for _ in range(args.peer_runs - 1)]
    peer = {k: max(p[k] for p in peers) for k in ("train_img_per_s", "infer_img_per_s")}
    yield {
      "bench": "compare",
      "batch": batch,
      "res": args.res,
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


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    prog="python -m pix2pix_jax.benchmark",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("kind", choices=["train", "infer", "input", "video", "compare"])
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
  parser.add_argument("--res", type=int, default=256)
  parser.add_argument("--load", type=int, default=286, help="input: resize before the crop")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--ngf", type=int, default=64)
  parser.add_argument("--ndf", type=int, default=64)
  parser.add_argument("--num-downs", type=int, default=8)
  parser.add_argument("--conv", default="auto", choices=["auto", "plain", "cpu_tuned"])
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--color-space", default="rgb", choices=["rgb", "lab"])
  parser.add_argument("--source", default="samples", help="input: samples | folder | tfds")
  parser.add_argument("--folder", default=None)
  parser.add_argument("--images", type=int, default=200, help="input: images to time")
  parser.add_argument("--peer-runs", type=int, default=2, help="compare: best of this many")
  parser.add_argument("--peer", default=os.path.join("..", "shared", "bench", "torch_pix2pix.py"))
  parser.add_argument("--seconds", type=float, default=20.0, help="video: clip length")
  parser.add_argument("--size", default="320x240", help="video: clip width x height")
  parser.add_argument("--preset", default="veryfast", help="video: x264 preset")
  parser.add_argument("--workdir", default=None, help="video: a trained workdir (else random init)")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  runners = {
    "train": bench_train,
    "infer": bench_infer,
    "input": bench_input,
    "video": bench_video,
    "compare": bench_compare,
  }
  result = runners[args.kind](args)
  for record in [result] if isinstance(result, dict) else result:
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
  main()
