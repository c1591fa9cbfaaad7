"""Colour hints (docs/video.md, "Colour hints"): the config-level names. The jit-able code is in
`device`, hint files in `files`, rasterising at the render size in `raster`."""

from pix2pix_jax import errors

HINT_CHANNELS = 3  # hint ab / 110, mask


class HintsError(errors.UserError, ValueError):
  """A hint file that cannot be used (unreadable, wrong size, bad points) or a model without
  hint inputs given hints."""


def enabled(config) -> bool:
  """Whether the config's generator takes hints (configs saved before hints existed: no)."""
  if not config.model.get("hints", False):
    return False
  if "hint_luminance_weight" not in config.model:
    raise HintsError(
      "this hint model was trained with the first hint encoding (a nearest-hint fill as input), "
      "which this version does not read: train it again"
    )
  return True


def luminance_weight(config) -> float:
  """How much luminance counts in `device.propagate`'s distance for the config's generator."""
  return float(config.model.hint_luminance_weight)


def input_channels(config) -> int:
  """The generator's input channels: 1 (L), plus 3 with hints."""
  return 1 + (HINT_CHANNELS if enabled(config) else 0)
