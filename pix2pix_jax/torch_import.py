"""Command line: a reference PyTorch Pix2Pix generator (latest_net_G.pth) into a workdir.

  python -m pix2pix_jax.torch_import --torch-checkpoint latest_net_G.pth \
      --config configs/default.py --workdir runs/imported

The workdir then holds a generator-only checkpoint (step 0) that `checkpoint.restore_generator`,
`inference.Colorizer.from_workdir` and `pix2pix-colorize` read; it cannot resume training. The
state_dict <-> flax variables mapping is `models.torch_weights`.
"""

import argparse
import os
import sys
from typing import Any

from pix2pix_jax.models import torch_weights


def import_generator(torch_checkpoint: str, config: Any, workdir: str) -> dict:
  """Writes a generator-only checkpoint (step 0) of `torch_checkpoint` into `workdir`."""
  import orbax.checkpoint as ocp

  from pix2pix_jax import checkpoint, color

  model = config.model
  if model.norm != "batch":
    raise ValueError(f"only norm='batch' generators can be imported, config has {model.norm!r}")
  variables = torch_weights.generator_from_torch(
    torch_weights.load_torch_file(torch_checkpoint), num_downs=model.num_downs
  )
  shape = torch_weights.generator_shape(variables)
  want = (1, model.ngf, color.num_output_channels(config.color_space))
  if shape != want:
    raise ValueError(
      f"{torch_checkpoint}: generator has (input channels, ngf, output channels) = {shape}, "
      f"the config (color_space={config.color_space!r}, model.ngf={model.ngf}) needs {want}"
    )
  directory = checkpoint.checkpoint_dir(workdir)
  if os.path.isdir(directory) and os.listdir(directory):
    raise FileExistsError(f"{directory} already holds checkpoints; use a new --workdir")
  state = {"g_params": variables["params"], "g_batch_stats": variables["batch_stats"]}
  with ocp.CheckpointManager(directory, item_names=("state", "config")) as manager:
    manager.save(
      0,
      args=ocp.args.Composite(
        state=ocp.args.PyTreeSave(state), config=ocp.args.JsonSave(config.to_dict())
      ),
    )
    manager.wait_until_finished()
  return variables


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m pix2pix_jax.torch_import",
    description="Import a reference PyTorch Pix2Pix generator (latest_net_G.pth) into a workdir.",
  )
  parser.add_argument("--torch-checkpoint", required=True, help="state_dict saved by torch.save")
  parser.add_argument("--config", required=True, help="config file describing the generator")
  parser.add_argument("--workdir", required=True, help="new workdir to write the checkpoint to")
  args = parser.parse_args(argv)
  from pix2pix_jax import config_files

  try:
    import_generator(args.torch_checkpoint, config_files.load(args.config), args.workdir)
  except (ImportError, OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {args.workdir} (generator only, step 0) from {args.torch_checkpoint}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
