"""pix2pix-import-torch: a reference PyTorch Pix2Pix generator (latest_net_G.pth) into a workdir.

The workdir holds a generator-only checkpoint (step 0) that colourising, evaluation and export
read; it cannot resume training. The weight mapping is `models.torch_weights`.
"""

import argparse
from typing import Any

from pix2pix_jax import checkpoint, cli, color, config_lib
from pix2pix_jax.models import torch_weights


def import_generator(torch_checkpoint: str, config: Any, workdir: str) -> dict:
  """Writes a generator-only checkpoint (step 0) of `torch_checkpoint` into `workdir`."""
  model = config.model
  if model.norm != "batch":
    raise torch_weights.WeightsError(
      f"only norm='batch' generators can be imported, config has {model.norm!r}"
    )
  variables = torch_weights.generator_from_torch(
    torch_weights.load_torch_file(torch_checkpoint), num_downs=model.num_downs
  )
  shape = torch_weights.generator_shape(variables)
  want = (1, model.ngf, color.num_output_channels(config.color_space))
  if shape != want:
    raise torch_weights.WeightsError(
      f"{torch_checkpoint}: generator has (input channels, ngf, output channels) = {shape}, "
      f"the config (color_space={config.color_space!r}, model.ngf={model.ngf}) needs {want}"
    )
  checkpoint.save_generator(workdir, config, variables)
  return variables


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="pix2pix-import-torch",
    description="Import a reference PyTorch Pix2Pix generator (latest_net_G.pth) into a workdir.",
  )
  parser.add_argument("--torch-checkpoint", required=True, help="state_dict saved by torch.save")
  parser.add_argument("--config", required=True, help="config file describing the generator")
  parser.add_argument("--workdir", required=True, help="new workdir to write the checkpoint to")
  cli.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  cli.configure(verbose=args.verbose)
  import_generator(args.torch_checkpoint, config_lib.load(args.config), args.workdir)
  print(f"wrote {args.workdir} (generator only, step 0) from {args.torch_checkpoint}")
  return 0


def run() -> None:
  """Console entry point (pix2pix-import-torch)."""
  cli.run(main)


if __name__ == "__main__":
  run()
