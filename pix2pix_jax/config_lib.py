"""Training configs: loading config files (``configs/*.py`` with a ``get_config()``), dotted
overrides, and the checks run before any compute, with messages naming the field."""

import ast
import copy
import difflib
import importlib.util
import os
from typing import Any

import ml_collections
from absl import flags
from ml_collections.config_flags import config_path

from pix2pix_jax import errors


class ConfigError(errors.UserError, ValueError):
  """A config file, field or value is unusable."""


def load(path: str) -> ml_collections.ConfigDict:
  """Runs `get_config()` of the Python config file at `path`."""
  if not os.path.isfile(path):
    raise ConfigError(f"{path}: config file not found")
  name = "pix2pix_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def load_sibling(this_file: str, name: str) -> ml_collections.ConfigDict:
  """The config in the same folder as `this_file` (lets configs build on each other by path)."""
  return load(os.path.join(os.path.dirname(os.path.abspath(this_file)), name))


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: dict[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted fields replaced: {"model.ngf": 32}.

  ml_collections checks each value against its field's type (an int field takes no string, a
  `placeholder(str)` field no int; ints go into float fields); an unknown field fails naming
  the closest known one.
  """
  for dotted in overrides:
    check_field(config, dotted)
  config = copy.deepcopy(config)
  was_locked = config.is_locked
  config.lock()
  for dotted, value in overrides.items():
    try:
      config.update_from_flattened_dict({dotted: value})
    except TypeError as e:
      wanted = getattr(config_path.get_type(dotted, config), "__name__", "other")
      raise ConfigError(f"config.{dotted}={value!r}: the field takes {wanted} values") from e
  if not was_locked:
    config.unlock()
  return config


def check_field(config: ml_collections.ConfigDict, dotted: str) -> None:
  """ConfigError (with the closest known name) if `config` has no field `dotted`."""
  parts = dotted.split(".")
  node = config
  for i, part in enumerate(parts):
    known = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
    if part not in known:
      close = difflib.get_close_matches(part, known, n=1)
      hint = f" (did you mean {'.'.join([*parts[:i], close[0]])!r}?)" if close else ""
      raise ConfigError(f"unknown config field {dotted!r}{hint}")
    node = node[part]


# Command-line text -> value, by the field's type, as pix2pix-train's --config.f=v parses it.
_TEXT_PARSERS = {
  bool: flags.BooleanParser(),
  int: flags.IntegerParser(),
  float: flags.FloatParser(),
  str: flags.ArgumentParser(),
}


def parse_override(config: ml_collections.ConfigDict, dotted: str, text: str) -> Any:
  """`--config.<dotted>=<text>` -> the value, parsed by the type of `config`'s field as
  pix2pix-train parses it: text stays a string for a str field ("123" too); a number or bool
  field takes only a number or bool; a field without a type takes a Python literal."""
  check_field(config, dotted)
  parser = _TEXT_PARSERS.get(config_path.get_type(dotted, config))
  if parser is None:
    return parse_value(text)
  try:
    return parser.parse(text)
  except ValueError as e:
    raise ConfigError(f"--config.{dotted}={text}: {e}") from None


def parse_value(text: str) -> Any:
  """A command-line value as a Python literal where it is one (1, 0.5, True), else a string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


CHOICES = {
  "color_space": ("rgb", "lab"),
  "data.source": ("tfds", "folder", "samples"),
  "model.norm": ("batch", "instance", "none"),
  "model.conv": ("auto", "plain", "cpu_tuned"),
  "model.discriminator": ("patch", "pixel"),
  "model.dtype": ("float32", "bfloat16"),
  "loss.gan": ("vanilla", "lsgan", "hinge"),
}

POSITIVE = (
  "batch_size",
  "data.crop_size",
  "data.load_size",
  "model.ngf",
  "model.ndf",
  "log_every_steps",
  "checkpoint_every_steps",
  "keep_checkpoint_every_steps",
  "sample_every_steps",
  "eval_every_steps",
)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on the first invalid field."""
  for field, allowed in CHOICES.items():
    value = get(config, field)
    if value not in allowed:
      raise ConfigError(f"config.{field}={value!r} is not one of {', '.join(allowed)}")
  for field in POSITIVE:
    value = get(config, field)
    if not isinstance(value, int) or value <= 0:
      raise ConfigError(f"config.{field}={value!r} must be a positive integer")

  num_downs, crop = config.model.num_downs, config.data.crop_size
  if not 5 <= num_downs <= 10:
    raise ConfigError(f"config.model.num_downs={num_downs} must be between 5 and 10")
  if crop % 2**num_downs:
    raise ConfigError(
      f"config.data.crop_size={crop} must be divisible by 2**config.model.num_downs={2**num_downs}"
    )
  if config.data.load_size < crop:
    raise ConfigError(
      f"config.data.load_size={config.data.load_size} must be >= config.data.crop_size={crop}"
    )
  if config.model.discriminator == "patch":
    n_layers = config.model.n_layers_d
    # Each stride-2 layer halves the size; the two 4x4 stride-1 layers take 3 pixels each.
    if n_layers < 1 or crop // 2**n_layers - 2 < 1:
      raise ConfigError(
        f"config.model.n_layers_d={n_layers} leaves no PatchGAN output at "
        f"config.data.crop_size={crop}"
      )
  if config.data.source == "folder" and not config.data.folder:
    raise ConfigError("config.data.folder must be set when config.data.source='folder'")
  if not 0 <= config.data.eval_fraction < 1:
    raise ConfigError(f"config.data.eval_fraction={config.data.eval_fraction} must be in [0, 1)")
  if config.loss.l1_weight < 0:
    raise ConfigError(f"config.loss.l1_weight={config.loss.l1_weight} must be >= 0")
  if config.optim.learning_rate <= 0:
    raise ConfigError(f"config.optim.learning_rate={config.optim.learning_rate} must be > 0")


def get(config: ml_collections.ConfigDict, dotted: str):
  """config["a.b"] for a dotted field name; None if absent."""
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "get"):
      return None
    node = node.get(part)
  return node
