"""The page's colouriser: a loaded photo kept prepared on the device, so an edit runs only the
generator (at its render size) and the compose (at full size); the saved result is what
`pix2pix-colorize` makes of the same photo and hint file.

One Engine serves every browser session and holds nothing of theirs: a session keeps its Photo.
"""

import dataclasses
import functools
import os
import time
import warnings
from typing import Any

import jax
import numpy as np
from PIL import Image

from pix2pix_jax import color, files, hints, images
from pix2pix_jax.app import palette
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize import main as colorize_main

DEFAULT_MAX_MEGAPIXELS = 50.0
# Larger photos are previewed at about this many pixels (the saved result is full size).
PREVIEW_PIXELS = 2_100_000
# The hint canvas is shown at most this many pixels on a side.
DISPLAY_SIDE = 1280


@dataclasses.dataclass(frozen=True, eq=False)
class Photo:
  """A photo loaded for colouring, with what every edit reuses."""

  path: str
  rgb: np.ndarray  # uint8 [H, W, 3] as pix2pix-colorize reads it
  alpha: np.ndarray | None  # uint8 [H, W] or None
  lightness: jax.Array  # Lab L [1, H, W, 1] on the device (the compose's input)
  x: jax.Array  # the generator's lightness input [B, r, r, 1]
  preview_lightness: jax.Array  # L at the preview size (`lightness` itself for most photos)
  gray: np.ndarray  # uint8 [h, w] at the display size: the canvas's background
  lab_l: np.ndarray  # float32 [H, W]: L of each pixel (the palette's lightness)

  @property
  def name(self) -> str:
    return os.path.basename(self.path)

  @property
  def size(self) -> tuple[int, int]:
    """(width, height)."""
    return self.rgb.shape[1], self.rgb.shape[0]

  @property
  def preview_size(self) -> tuple[int, int]:
    return self.preview_lightness.shape[2], self.preview_lightness.shape[1]

  @property
  def display_size(self) -> tuple[int, int]:
    return self.gray.shape[1], self.gray.shape[0]

  @functools.cached_property
  def preview_gray_rgb(self) -> np.ndarray:
    """The lightness as uint8 RGB at the preview size (what the compare views set beside the
    result)."""
    gray = np.asarray(self.preview_lightness[0, ..., 0]) / 100.0
    return np.repeat(np.round(gray * 255).astype(np.uint8)[..., None], 3, axis=-1)


@dataclasses.dataclass(frozen=True, eq=False)
class Rendered:
  """One edit's output: the generator's chroma and the preview composed from it."""

  ab: np.ndarray  # [1, r, r, 2]
  preview: np.ndarray  # uint8 [h, w, 3] at the preview size
  seconds: float


def _fit(width: int, height: int, *, pixels: float | None = None, side: int | None = None):
  """The largest size of the same aspect within `pixels` and `side` (never larger)."""
  scale = 1.0
  if pixels is not None:
    scale = min(scale, (pixels / (width * height)) ** 0.5)
  if side is not None:
    scale = min(scale, side / max(width, height))
  return max(1, round(width * scale)), max(1, round(height * scale))


class Engine:
  """A Colorizer and the photo limits of the page."""

  def __init__(
    self,
    colorizer: colorizer_lib.Colorizer,
    *,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    model_flags: tuple[str, ...] = ("--workdir", "WORKDIR"),
  ):
    """model_flags: how pix2pix-colorize names the same model (shown with each download)."""
    self.colorizer = colorizer
    self.max_pixels = int(max_megapixels * 1e6)
    self.model_flags = tuple(model_flags)

  @property
  def takes_hints(self) -> bool:
    return self.colorizer.takes_hints

  @property
  def hints_off_reason(self) -> str | None:
    """Why the page's hint tools are off (None: they are on)."""
    try:
      self.colorizer.check_takes_hints("the model")
    except hints.HintsError as e:
      return str(e)
    return None

  @property
  def description(self) -> str:
    c = self.colorizer
    kind = "takes colour hints" if self.takes_hints else "no colour hints"
    return f"Model {' '.join(self.model_flags[1:])}: render size {c.render_size}, {kind}."

  def load(self, path: str, name: str | None = None) -> Photo:
    """An image file -> a Photo; MediaError naming the file (`name`, else the path) if it is not
    an image or has more pixels than the limit (checked before decoding)."""
    shown = name or os.path.basename(path)
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as probe:
          width, height = probe.size
    except Image.DecompressionBombError as e:
      raise files.MediaError(f"{shown}: too many pixels for this page ({e})") from e
    except (OSError, SyntaxError, ValueError) as e:
      raise files.MediaError(f"{shown}: not a readable image ({_reason(e)})") from e
    if width * height > self.max_pixels:
      raise files.MediaError(
        f"{shown}: {width}x{height} is {width * height / 1e6:.0f} megapixels, above this page's "
        f"limit of {self.max_pixels / 1e6:g} (pix2pix-app --max-megapixels, or pix2pix-colorize)"
      )
    try:
      loaded = images.load_image(path)
    except files.MediaError as e:
      raise files.MediaError(str(e).replace(path, shown)) from e
    return self.prepare(loaded.rgb, alpha=loaded.alpha, path=path)

  def prepare(self, rgb: np.ndarray, *, alpha: np.ndarray | None = None, path: str = "photo.png"):
    """uint8 [H, W, 3] -> a Photo, its lightness and generator input computed once."""
    lightness, x = _prepared(self.colorizer, rgb)
    width, height = rgb.shape[1], rgb.shape[0]
    preview_lightness = lightness
    if width * height > PREVIEW_PIXELS:
      small = _resize(rgb, _fit(width, height, pixels=PREVIEW_PIXELS))
      preview_lightness = _prepared(self.colorizer, small)[0]
    lab_l = np.asarray(lightness)[0, ..., 0]
    gray = np.asarray(color.float_to_uint8(lab_l / 100.0))
    display = _fit(width, height, side=DISPLAY_SIDE)
    if display != (width, height):
      gray = np.asarray(Image.fromarray(gray).resize(display, Image.Resampling.BILINEAR))
    return Photo(path, rgb, alpha, lightness, x, preview_lightness, gray, lab_l)

  def generate(self, photo: Photo, hints: np.ndarray | None = None) -> np.ndarray:
    """The generator's chroma [1, r, r, 2] for the photo with `hints` (an RGBA scribble of its
    size, or None), batched as `Colorizer.colorize_images` does."""
    c = self.colorizer
    hint_batch = None
    if c.takes_hints:
      raster = None
      if hints is not None:
        height, width = photo.rgb.shape[:2]
        raster = c.rasterize(hints, height, width)
      hint_batch = c.hint_batch([raster])
    return np.asarray(c.generate(photo.x, hint_batch))[:1]

  def compose(
    self,
    photo: Photo,
    ab: np.ndarray,
    *,
    saturation: float = 1.0,
    reference: color.ChromaStats | None = None,
    full: bool = False,
  ) -> np.ndarray:
    """The generator's chroma on the photo's lightness with the colour controls -> uint8
    [h, w, 3], at the preview size or (`full`) the photo's."""
    lightness = photo.lightness if full else photo.preview_lightness
    return np.asarray(self.controls(saturation, reference).compose(lightness, ab))[0]

  def controls(self, saturation: float, reference: color.ChromaStats | None):
    """The Colorizer with other colour controls, sharing its compiled functions."""
    c = self.colorizer
    if float(c.saturation) == saturation and c.reference is reference:
      return c
    return c.with_controls(saturation=saturation, reference=reference)

  def render(
    self,
    photo: Photo,
    hints: Any = None,
    *,
    saturation: float = 1.0,
    reference: color.ChromaStats | None = None,
  ) -> Rendered:
    """One edit: the generator on the hints, then the preview composed."""
    start = time.perf_counter()
    ab = self.generate(photo, hints)
    preview = self.compose(photo, ab, saturation=saturation, reference=reference)
    return Rendered(ab, preview, time.perf_counter() - start)

  def save_result(
    self,
    path: str,
    photo: Photo,
    ab: np.ndarray,
    *,
    saturation: float = 1.0,
    reference: color.ChromaStats | None = None,
  ) -> np.ndarray:
    """Writes the full-size result as pix2pix-colorize would (alpha kept); returns its RGB."""
    rgb = self.compose(photo, ab, saturation=saturation, reference=reference, full=True)
    images.save_image(path, rgb, alpha=photo.alpha)
    return rgb

  def warm_up(self, sizes: tuple[tuple[int, int], ...] = ((1000, 1000),)) -> float:
    """Compiles the generator, and prepare and compose for each (width, height), before the
    first click; returns the seconds it took."""
    start = time.perf_counter()
    for width, height in sizes:
      photo = self.prepare(np.full((height, width, 3), 128, np.uint8))
      hints = None
      if self.takes_hints:
        hints = np.zeros((height, width, 4), np.uint8)
        hints[0, 0] = (200, 30, 40, 255)
      self.render(photo, hints)
    palette.pick(50.0, palette.SIZE / 2, palette.SIZE / 2)
    palette.plane(50.0)
    return time.perf_counter() - start


def load_reference(path: str, name: str | None = None) -> color.ChromaStats:
  """A reference photo's chroma statistics, as `pix2pix-colorize --reference` takes them;
  MediaError naming the file for an unreadable or gray photo."""
  try:
    return colorize_main.load_reference(path)
  except files.MediaError as e:
    raise files.MediaError(str(e).replace(path, name or os.path.basename(path))) from e


def _prepared(c: colorizer_lib.Colorizer, rgb: np.ndarray) -> tuple[jax.Array, jax.Array]:
  """(Lab L [1, H, W, 1], the generator's input batch [B, r, r, 1]) of one image, as
  `Colorizer.colorize_images` makes them (the same values, so the same result)."""
  lightness, x = c.prepare(rgb[None])  # padded to the batch: the first is the photo's
  return jax.device_put(np.asarray(lightness)[:1]), x


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def _reason(e: Exception) -> str:
  """An exception's message without PIL's repetition of the path."""
  text = str(e)
  return text.split("'")[0].strip().rstrip(":") if "cannot identify image file" in text else text
