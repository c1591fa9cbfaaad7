"""Train and infer speed: img/s, compile time, XLA's FLOP count and MFU of the jit'd train step
and the generator, and the PyTorch peer on the same shapes (docs/performance.md).
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import parallel, xla_flags
from pix2pix_jax.tools import shapes
from pix2pix_jax.train import step as train_step

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


def run_peer(args, config, *extra: str) -> dict:
  """The peer's JSON record for `config`'s shapes; `extra`: more of its flags."""
  cmd = [sys.executable, args.peer, "--batch", str(config.batch_size)]
  cmd += ["--res", str(config.data.crop_size), "--steps", str(args.steps), "--in-ch", "1"]
  cmd += ["--out-ch", "3" if config.color_space == "rgb" else "2", *extra]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])
