"""Checks a training config before any compute, with messages naming the field."""

import ml_collections

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


class ConfigError(ValueError):
  """A config field has an unusable value."""


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
