"""Colourising video: `colorize_video` (clip.py) runs a clip through the stages source ->
colourise -> temporal -> writer, serially (serial.py) or in chunks (chunked.py).

Importing this package imports none of its modules (nor decord or JAX).
"""

from typing import Any


def __getattr__(name: str) -> Any:
  if name == "colorize_video":
    from pix2pix_jax.colorize.video import clip  # noqa: PLC0415

    return clip.colorize_video
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
