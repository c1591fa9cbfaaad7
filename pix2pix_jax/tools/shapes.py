"""The networks the benchmarks measure: the paper's shapes built in code, or a config file, with
command-line flags for the fields benchmarks vary (the package reads no config by a path of its
own)."""

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from pix2pix_jax import config_lib, models

# flag -> (config field, type, help)
FLAGS = {
  "--batch-size": ("batch_size", int, "global batch size"),
  "--render-size": ("data.crop_size", int, "square model input size"),
  "--ngf": ("model.ngf", int, "generator width"),
  "--ndf": ("model.ndf", int, "discriminator width"),
  "--num-downs": ("model.num_downs", int, "U-Net levels (8: unet_256, 7: unet_128)"),
  "--conv": ("model.conv", str, "auto | plain | cpu_tuned"),
  "--dtype": ("model.dtype", str, "float32 | bfloat16"),
  "--color-space": ("color_space", str, "rgb | lab"),
}


def paper_config() -> ml_collections.ConfigDict:
  """unet_256 (ngf 64) + 70x70 PatchGAN (ndf 64), 1 -> 3 channels at 256x256, batch 4, with the
  paper's losses and optimiser, reading the embedded samples: the fields that training, inference
  and the input pipeline read."""
  return ml_collections.ConfigDict(
    {
      "seed": 0,
      "color_space": "rgb",
      "batch_size": 4,
      "num_epochs": 100,
      "num_epochs_decay": 100,
      "data": {
        "source": "samples",
        "name": "places365_small",
        "data_dir": None,
        "folder": None,
        "train_split": "train",
        "eval_split": "validation",
        "eval_fraction": 0.1,
        "max_train_examples": -1,
        "max_eval_examples": 256,
        "load_size": 256,
        "crop_size": 256,
        "flip": True,
        "shuffle_buffer": 10_000,
      },
      "model": {
        "num_downs": 8,
        "ngf": 64,
        "norm": "batch",
        "use_dropout": True,
        "conv": "auto",
        "discriminator": "patch",
        "ndf": 64,
        "n_layers_d": 3,
        "dtype": "float32",
      },
      "loss": {"gan": "vanilla", "l1_weight": 100.0},
      "optim": {"learning_rate": 2e-4, "b1": 0.5, "b2": 0.999},
    }
  )


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--config", default=None, help="config file (default: the paper's shapes)")
  for flag, (field, kind, text) in FLAGS.items():
    parser.add_argument(flag, type=kind, default=None, help=f"{text} (config.{field})")


def config_from_args(args: argparse.Namespace) -> ml_collections.ConfigDict:
  """The config file (or `paper_config()`) with the flags that were given applied."""
  config = config_lib.load(args.config) if args.config else paper_config()
  overrides = {}
  for flag, (field, _, _) in FLAGS.items():
    value = getattr(args, flag[2:].replace("-", "_"))
    if value is not None:
      overrides[field] = value
  if "data.crop_size" in overrides:
    overrides["data.load_size"] = overrides["data.crop_size"]
  return config_lib.apply_overrides(config, overrides)


def to_flags(args: argparse.Namespace) -> list[str]:
  """The flags of `args` that `add_arguments` defines, for a subprocess."""
  out = ["--config", args.config] if args.config else []
  for flag in FLAGS:
    value = getattr(args, flag[2:].replace("-", "_"))
    if value is not None:
      out += [flag, str(value)]
  return out


def random_generator(config: ml_collections.ConfigDict) -> tuple[Any, dict[str, Any]]:
  """The config's generator and randomly initialised variables for it (for timing)."""
  generator = models.make_generator(config)
  x = jnp.zeros((1, config.data.crop_size, config.data.crop_size, 1), jnp.float32)
  variables = jax.jit(lambda key: generator.init(key, x, train=False))(jax.random.key(0))
  return generator, variables
