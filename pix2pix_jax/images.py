"""Image files: the extensions the project reads, decoding any PIL mode to uint8 RGB, saving.
Training and colourising share one decoder (`decode`); `FOR_TRAINING` and `FOR_COLORIZING` name
how each treats transparency and 16-bit gray (`Decoding`).
"""

import dataclasses
import enum
import io
import os

import numpy as np
from PIL import Image, ImageOps

from pix2pix_jax import files

# The embedded sample photos (package data): train/ and eval/ with their licences.
SAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "samples")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# PIL formats whose files can keep an alpha channel on output.
_ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")
# Modes that carry alpha in a channel (rather than as a transparent colour or palette index).
_ALPHA_MODES = ("RGBA", "LA", "PA")
_PREMULTIPLIED_MODES = ("RGBa", "La")


class Decoding(enum.Enum):
  """The two ways `to_rgb` treats transparency and 16-bit gray whose values all fit 8 bits."""

  # Any transparency (an alpha channel, a transparent colour or palette index, premultiplied
  # RGBa/La) is composited on white; dark 16-bit gray scales by 255/65535 like any 16-bit image.
  TRAINING = "training"
  # Alpha (RGBA, LA, PA, a palette's transparent index) is returned separately with the colour
  # under it kept; dark 16-bit gray keeps its values (8-bit data stored in 16 bits).
  COLORIZING = "colorizing"


FOR_TRAINING = Decoding.TRAINING
FOR_COLORIZING = Decoding.COLORIZING


@dataclasses.dataclass
class LoadedImage:
  rgb: np.ndarray  # uint8 [H, W, 3], orientation applied
  alpha: np.ndarray | None  # uint8 [H, W] or None
  format: str | None  # PIL format name of the source


def open_upright(source: bytes | str, min_size: int | None = None) -> tuple[Image.Image, str]:
  """Decodes encoded bytes or a path; returns (image with EXIF orientation applied, format).

  With `min_size`, JPEGs are decoded at the smallest power-of-two reduction that keeps both
  sides >= min_size (PIL draft mode), which makes very large photos cheap to load. Raises
  whatever PIL raises for data it cannot decode.
  """
  with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
    if min_size is not None:
      image.draft(image.mode, (min_size, min_size))
    image.load()
    return ImageOps.exif_transpose(image), image.format


def to_rgb(image: Image.Image, decoding: Decoding) -> tuple[np.ndarray, np.ndarray | None]:
  """Any PIL mode (gray, RGB, RGBA, palette, 16-bit, float, CMYK, ...) -> (uint8 RGB [H, W, 3],
  uint8 alpha [H, W] or None). Integer images above 8 bits scale 65535 to 255, float images in
  [0, 1] scale 1 to 255."""
  mode, training = image.mode, decoding is Decoding.TRAINING
  if mode.startswith("I;16") or mode in ("I", "F"):
    pixels = np.asarray(image, dtype=np.float64)
    top = pixels.max(initial=0)
    if mode == "F":
      if top <= 1.0:
        pixels = pixels * 255.0
    elif top > 255 or (training and mode.startswith("I;16")):
      pixels = pixels / 257.0
    gray = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1), None
  if training:
    has_alpha = mode in _ALPHA_MODES + _PREMULTIPLIED_MODES or "transparency" in image.info
  else:
    has_alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info)
  if not has_alpha:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))), None
  rgba = image.convert("RGBA")
  if training:
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")), None
  alpha = np.asarray(rgba)[..., 3].copy()
  return np.ascontiguousarray(np.asarray(rgba.convert("RGB"))), alpha


def decode(source: bytes | str, decoding: Decoding, min_size: int | None = None) -> LoadedImage:
  """`open_upright` then `to_rgb`; raises whatever PIL raises."""
  image, fmt = open_upright(source, min_size)
  rgb, alpha = to_rgb(image, decoding)
  return LoadedImage(rgb, alpha, fmt)


def decode_image(data: bytes, min_size: int | None = None) -> np.ndarray:
  """Training's decoding: encoded bytes -> uint8 RGB [H, W, 3], upright, transparency on white.

  `min_size`: see `open_upright`. Raises whatever PIL raises.
  """
  return decode(data, FOR_TRAINING, min_size).rgb


def load_image(path: str) -> LoadedImage:
  """Colourising's decoding: an image file -> uint8 RGB as displayed, alpha kept separately.

  MediaError (one line naming the file) for a missing or undecodable file.
  """
  if not os.path.exists(path):
    if os.path.islink(path):
      raise files.MediaError(f"{path}: broken symbolic link (or a loop of links)")
    raise files.MediaError(f"{path}: no such file")
  try:
    image, fmt = open_upright(path)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise files.MediaError(f"{path}: not a readable image ({e})") from e
  rgb, alpha = to_rgb(image, FOR_COLORIZING)
  return LoadedImage(rgb, alpha, fmt)


def save_image(path: str, rgb: np.ndarray, *, alpha: np.ndarray | None = None) -> None:
  """Writes uint8 RGB (plus alpha where the format keeps it); format from the extension."""
  image = Image.fromarray(rgb, "RGB")
  ext = os.path.splitext(path)[1].lower()
  fmt = Image.registered_extensions().get(ext)
  if fmt is None:
    raise files.MediaError(f"{path}: unknown image extension {ext!r}")
  if alpha is not None and fmt in _ALPHA_FORMATS:
    image.putalpha(Image.fromarray(alpha, "L"))
  options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
  with open(path, "wb") as f:
    image.save(f, format=fmt, **options)
