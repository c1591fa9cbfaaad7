"""pix2pix-export: a training workdir's generator as one self-contained .p2p file (`p2p_file`),
lowered with `jax.export` for every platform in --platforms at once, at a fixed render size and
batch, and optionally as a TensorFlow SavedModel (`saved_model`). Usage: README.md; the format
and what runs it: docs/video.md ("Exported models").
"""

import argparse
import os
from typing import Any

import jax
import jax.numpy as jnp
from jax import export as jax_export

from pix2pix_jax import checkpoint, cli, errors, files, hints
from pix2pix_jax.export import p2p_file, saved_model
from pix2pix_jax.models import networks, render

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # what jax.export lowers for
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")


def export_generator(
  config: Any,
  variables: dict[str, Any],
  *,
  render_size: int,
  batch_per_device: int,
  platforms: tuple[str, ...] = DEFAULT_PLATFORMS,
) -> jax_export.Exported:
  """(variables, model input [batch_per_device, r, r, C]) -> ab, lowered for `platforms`; C = 1,
  or 4 for a hint generator (L, then hints.device.encode's channels)."""
  channels = hints.input_channels(config)
  x = jax.ShapeDtypeStruct((batch_per_device, render_size, render_size, channels), jnp.float32)
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
  predict = jax.jit(networks.generator_predict(config))
  return jax_export.export(predict, platforms=platforms)(abstract, x)


def export_workdir(
  workdir: str,
  output: str,
  *,
  step: int | None = None,
  render_size: int | None = None,
  batch_per_device: int = 8,
  platforms: tuple[str, ...] = DEFAULT_PLATFORMS,
  overwrite: bool = False,
  saved_model_dir: str | None = None,
) -> dict[str, Any]:
  """Writes `output` (atomically) from the workdir's generator, and the SavedModel folder
  `saved_model_dir` if given; returns the file's metadata."""
  files.check_output(output, overwrite=overwrite)
  if saved_model_dir:
    files.check_overwrite(saved_model_dir, overwrite=overwrite)
  config, variables = checkpoint.restore_generator(workdir, step)
  size = render.check_render_size(int(render_size or config.data.crop_size), config.model.num_downs)
  unknown = set(platforms) - set(PLATFORMS)
  if unknown or not platforms:
    raise errors.UserError(
      f"--platforms {','.join(platforms)}: expected some of {', '.join(PLATFORMS)}"
    )
  if batch_per_device < 1:
    raise errors.UserError(f"--batch-size must be at least 1, got {batch_per_device}")
  # The same pytree as `Colorizer` passes, so that the exported call accepts it.
  variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats") or {}}
  exported = export_generator(
    config, variables, render_size=size, batch_per_device=batch_per_device, platforms=platforms
  )
  metadata = {
    "render_size": size,
    "color_space": config.color_space,
    "num_downs": int(config.model.num_downs),
    "hints": hints.enabled(config),
    "input_channels": hints.input_channels(config),
    **({"hint_luminance_weight": hints.luminance_weight(config)} if hints.enabled(config) else {}),
    "batch_per_device": batch_per_device,
    "platforms": list(exported.platforms),
    "parameters": int(sum(a.size for a in jax.tree.leaves(variables["params"]))),
    "source": {
      "workdir": os.path.abspath(workdir),
      "step": step or checkpoint.latest_step(workdir),
    },
    "jax_version": jax.__version__,
  }
  p2p_file.save(output, exported, variables, metadata, overwrite=overwrite)
  if saved_model_dir:
    predict = networks.generator_predict(config)
    saved_model.save(saved_model_dir, predict, variables, metadata, overwrite=overwrite)
  return metadata


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="pix2pix-export",
    description="Write a workdir's generator as one self-contained .p2p model file.",
  )
  parser.add_argument("--workdir", required=True, help="training workdir (its checkpoints/)")
  parser.add_argument("--output", "-o", required=True, help="the .p2p file to write")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument(
    "--render-size", type=int, default=None, help="model resolution (default: training size)"
  )
  parser.add_argument(
    "--batch-size", type=int, default=8, help="images per call on each device (default 8)"
  )
  parser.add_argument(
    "--platforms",
    default=",".join(DEFAULT_PLATFORMS),
    help="platforms to lower for, comma-separated (default %(default)s)",
  )
  parser.add_argument(
    "--saved-model",
    metavar="DIR",
    help="also write a TensorFlow SavedModel of the same program (jax2tf) into DIR",
  )
  parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
  cli.add_verbose_flag(parser)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  cli.configure(verbose=args.verbose)
  platforms = tuple(p.strip() for p in args.platforms.split(",") if p.strip())
  metadata = export_workdir(
    args.workdir,
    args.output,
    step=args.step,
    render_size=args.render_size,
    batch_per_device=args.batch_size,
    platforms=platforms,
    overwrite=args.overwrite,
    saved_model_dir=args.saved_model,
  )
  megabytes = os.path.getsize(args.output) / 1e6
  print(
    f"{args.workdir} step {metadata['source']['step']} -> {args.output}: "
    f"{metadata['parameters']:,} parameters, render size {metadata['render_size']}, "
    f"{metadata['color_space']}, {metadata['batch_per_device']} images per device per call, "
    f"{'/'.join(metadata['platforms'])}, {megabytes:.1f} MB"
  )
  if args.saved_model:
    print(f"TensorFlow SavedModel (serving_default: x -> ab) -> {args.saved_model}")
  return 0


def run() -> None:
  """The `pix2pix-export` console entry point."""
  cli.run(main)


if __name__ == "__main__":
  run()
