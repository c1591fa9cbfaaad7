"""pix2pix-benchmark: speed and memory benchmarks printing one JSON line per measurement.

Subcommands train, infer, input, video, compare, accelerator-report, memory and app (speed.py,
video.py, host.py, accelerator_report.py, memory.py, app.py); how to run and read them:
docs/performance.md (app: docs/app.md).
"""

import argparse
import json
import os
import time
from collections.abc import Iterator

from pix2pix_jax import cli, config_lib
from pix2pix_jax.tools import shapes
from pix2pix_jax.tools.bench import speed


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
  from pix2pix_jax.tools.bench import video as video_benchmark

  if args.host:
    from pix2pix_jax.tools.bench import host as host_benchmark

    return host_benchmark.run(args)
  return video_benchmark.run(args)


def bench_memory(args) -> list[dict]:
  from pix2pix_jax.tools.bench import memory as memory_benchmark

  return memory_benchmark.run(args)


def bench_app(args) -> list[dict]:
  from pix2pix_jax.tools.bench import app as app_benchmark

  return app_benchmark.run(args)


def bench_accelerator_report(args) -> list[dict]:
  from pix2pix_jax.tools.bench import accelerator_report

  return accelerator_report.run(args)


def bench_compare(args) -> Iterator[dict]:
  """Ours and the PyTorch peer on the same shapes, in one run, with ratios; one record per batch
  size, yielded as soon as it is measured. The peer runs `--peer-runs` times (before and after
  ours) and its best figure is the one compared, since its speed varies from run to run."""
  for batch in args.batch_sizes:
    sub = argparse.Namespace(**{**vars(args), "batch_size": batch})
    config = shapes.config_from_args(sub)
    peers = [speed.run_peer(args, config)]
    ours_train = speed.bench_train(sub)
    ours_infer = speed.bench_infer(sub)
    peers += [speed.run_peer(args, config) for _ in range(args.peer_runs - 1)]
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
  "train": speed.bench_train,
  "infer": speed.bench_infer,
  "input": bench_input,
  "video": bench_video,
  "compare": bench_compare,
  "accelerator-report": bench_accelerator_report,
  "memory": bench_memory,
  "app": bench_app,
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
      from pix2pix_jax.tools.bench import host as host_benchmark

      host_benchmark.add_arguments(sub)
    if kind == "memory":
      from pix2pix_jax.tools.bench import memory as memory_benchmark

      memory_benchmark.add_arguments(sub)
    if kind == "compare":
      sub.add_argument("peer", help="the PyTorch script to compare with (e.g. torch_pix2pix.py)")
      sub.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
      sub.add_argument("--peer-runs", type=int, default=2, help="best of this many PyTorch runs")
  from pix2pix_jax.tools.bench import accelerator_report

  text = "train, infer and video rates, the PyTorch peer, versions: a markdown report"
  report = kinds.add_parser("accelerator-report", help=text, description=text)
  accelerator_report.add_arguments(report)
  from pix2pix_jax.tools.bench import app as app_benchmark

  text = "pix2pix-app: an edit's round trip to a refreshed result, p50 and p95"
  app_benchmark.add_arguments(kinds.add_parser("app", help=text, description=text))
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
