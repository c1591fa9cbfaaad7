"""The square render sizes a U-Net generator accepts (importable without flax)."""

from pix2pix_jax import errors


class RenderSizeError(errors.UserError, ValueError):
  """The render size does not suit the generator."""


def check_render_size(size: int, num_downs: int) -> int:
  """Returns `size` if the generator's `num_downs` halvings divide it; else RenderSizeError."""
  multiple = 2**num_downs
  if size <= 0 or size % multiple:
    raise RenderSizeError(
      f"render size {size} must be a positive multiple of 2**num_downs = {multiple}"
    )
  return size
