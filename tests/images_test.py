"""Image decoding for training and for colourising: every PIL mode against exact expectations."""

import numpy as np
import pytest
from PIL import Image

from pix2pix_jax import files, images

RNG = np.random.default_rng(0)
H, W = 7, 9
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, (H, W), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (H, W), dtype=np.uint8)
ALPHA[0, :3] = (0, 255, 128)
INDEX = RNG.integers(0, 16, (H, W), dtype=np.uint8)
PALETTE = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
WIDE = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
DARK = RNG.integers(0, 256, (H, W)).astype(np.uint16)  # 16-bit, no value above 255
INT32 = RNG.integers(-10, 70_000, (H, W)).astype(np.int32)
UNIT = RNG.random((H, W)).astype(np.float32)
FLOATS = (RNG.random((H, W)) * 300.0).astype(np.float32)
CMYK = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)


def rgb3(gray):
  return np.repeat(np.asarray(gray, np.uint8)[..., None], 3, axis=-1)


def on_white(colour, alpha):
  """Compositing on opaque white, rounded half up (PIL's alpha_composite, checked exactly)."""
  colour, alpha = np.asarray(colour, np.int64), np.asarray(alpha, np.int64)[..., None]
  return np.floor((colour * alpha + 255 * (255 - alpha)) / 255 + 0.5).astype(np.uint8)


def from_16bit(values):
  return np.clip(np.rint(np.asarray(values, np.float64) / 257.0), 0, 255).astype(np.uint8)


def palette_image(transparent=None):
  image = Image.fromarray(INDEX, "P")
  image.putpalette(PALETTE.tobytes())
  if transparent is not None:
    image.info["transparency"] = transparent
  return image


def cmyk_to_rgb(cmyk):
  cmyk = cmyk.astype(np.int64)
  inverse_k = 255 - cmyk[..., 3:]
  return (inverse_k - np.floor(cmyk[..., :3] * inverse_k / 255 + 0.5)).astype(np.uint8)


_KEY = GRAY[0, 0]
_KEY_RGB = tuple(int(v) for v in RGB[0, 0])
_PALETTE_RGB = PALETTE[INDEX]
_KEYED_GRAY = np.where(GRAY == _KEY, 0, 255).astype(np.uint8)
_KEYED_RGB = np.where((RGB == RGB[0, 0]).all(-1), 0, 255).astype(np.uint8)
_KEYED_INDEX = np.where(INDEX == 3, 0, 255).astype(np.uint8)

# name: (image, save options, training's RGB, colourising's (RGB, alpha)).
CASES = {
  "gray.png": (Image.fromarray(GRAY, "L"), {}, rgb3(GRAY), (rgb3(GRAY), None)),
  "rgb.png": (Image.fromarray(RGB), {}, RGB, (RGB, None)),
  "rgb.bmp": (Image.fromarray(RGB), {}, RGB, (RGB, None)),
  "rgb.webp": (Image.fromarray(RGB), {"lossless": True}, RGB, (RGB, None)),
  "rgba.png": (
    Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA"),
    {},
    on_white(RGB, ALPHA),
    (RGB, ALPHA),
  ),
  "rgba.tiff": (
    Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA"),
    {},
    on_white(RGB, ALPHA),
    (RGB, ALPHA),
  ),
  "gray_alpha.png": (
    Image.fromarray(np.dstack([GRAY, ALPHA]), "LA"),
    {},
    on_white(rgb3(GRAY), ALPHA),
    (rgb3(GRAY), ALPHA),
  ),
  "palette.png": (palette_image(), {}, _PALETTE_RGB, (_PALETTE_RGB, None)),
  "palette_transparent.png": (
    palette_image(transparent=3),
    {"transparency": 3},
    on_white(_PALETTE_RGB, _KEYED_INDEX),
    (_PALETTE_RGB, _KEYED_INDEX),
  ),
  # A transparent colour in a gray or RGB image: training composites it on white; colourising
  # has always ignored it (no alpha in the output).
  "gray_keyed.png": (
    Image.fromarray(GRAY, "L"),
    {"transparency": int(_KEY)},
    on_white(rgb3(GRAY), _KEYED_GRAY),
    (rgb3(GRAY), None),
  ),
  "rgb_keyed.png": (
    Image.fromarray(RGB),
    {"transparency": _KEY_RGB},
    on_white(RGB, _KEYED_RGB),
    (RGB, None),
  ),
  "bilevel.png": (
    Image.fromarray(GRAY > 127),
    {},
    rgb3(np.where(GRAY > 127, 255, 0)),
    (rgb3(np.where(GRAY > 127, 255, 0)), None),
  ),
  "cmyk.tiff": (Image.fromarray(CMYK, "CMYK"), {}, cmyk_to_rgb(CMYK), (cmyk_to_rgb(CMYK), None)),
  "gray16.png": (Image.fromarray(WIDE), {}, rgb3(from_16bit(WIDE)), (rgb3(from_16bit(WIDE)), None)),
  "gray16.tiff": (
    Image.fromarray(WIDE),
    {},
    rgb3(from_16bit(WIDE)),
    (rgb3(from_16bit(WIDE)), None),
  ),
  # 16-bit with no value above 255: training scales it like any 16-bit image, colourising reads
  # it as 8-bit values.
  "gray16_dark.png": (Image.fromarray(DARK), {}, rgb3(from_16bit(DARK)), (rgb3(DARK), None)),
  "gray16_dark.tiff": (Image.fromarray(DARK), {}, rgb3(from_16bit(DARK)), (rgb3(DARK), None)),
  "gray32.tiff": (
    Image.fromarray(INT32),
    {},
    rgb3(from_16bit(INT32)),
    (rgb3(from_16bit(INT32)), None),
  ),
  "gray32_small.tiff": (
    Image.fromarray(INT32 % 256),
    {},
    rgb3(INT32 % 256),
    (rgb3(INT32 % 256), None),
  ),
  "float_unit.tiff": (
    Image.fromarray(UNIT),
    {},
    rgb3(np.rint(UNIT.astype(np.float64) * 255)),
    (rgb3(np.rint(UNIT.astype(np.float64) * 255)), None),
  ),
  "float_wide.tiff": (
    Image.fromarray(FLOATS),
    {},
    rgb3(np.clip(np.rint(FLOATS.astype(np.float64)), 0, 255)),
    (rgb3(np.clip(np.rint(FLOATS.astype(np.float64)), 0, 255)), None),
  ),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("modes")
  for name, (image, options, _, _) in CASES.items():
    image.save(root / name, **options)
  return root


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_mode_decodes_exactly_for_training_and_colourising(folder, name):
  _, _, training, (colour_rgb, colour_alpha) = CASES[name]
  path = folder / name
  got = images.decode_image(path.read_bytes())
  assert got.dtype == np.uint8 and got.shape == (H, W, 3)
  np.testing.assert_array_equal(got, training)
  loaded = images.load_image(str(path))
  assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (H, W, 3)
  np.testing.assert_array_equal(loaded.rgb, colour_rgb)
  if colour_alpha is None:
    assert loaded.alpha is None
  else:
    np.testing.assert_array_equal(loaded.alpha, colour_alpha)
  with Image.open(path) as image:
    assert loaded.format == image.format


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_exif_orientation_is_applied_by_both(tmp_path, ext):
  exif = Image.Exif()
  exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
  path = tmp_path / f"rotated{ext}"
  Image.fromarray(RGB).save(path, exif=exif, **({"quality": 100} if ext == ".jpg" else {}))
  training = images.decode_image(path.read_bytes())
  colour = images.load_image(str(path)).rgb
  assert training.shape == colour.shape == (W, H, 3)
  np.testing.assert_array_equal(training, colour)
  if ext == ".png":
    np.testing.assert_array_equal(training, np.rot90(RGB, k=-1))


def test_jpeg_draft_decodes_at_a_reduced_scale(tmp_path):
  path = tmp_path / "large.jpg"
  Image.new("RGB", (2400, 1600), (60, 120, 180)).save(path, quality=70)
  image, fmt = images.open_upright(str(path), min_size=300)
  assert (image.size, fmt) == ((600, 400), "JPEG")
  assert images.decode_image(path.read_bytes(), min_size=300).shape == (400, 600, 3)
  assert images.load_image(str(path)).rgb.shape == (1600, 2400, 3)


def test_load_image_errors_name_the_file(tmp_path):
  with pytest.raises(files.MediaError, match="missing.png: no such file"):
    images.load_image(str(tmp_path / "missing.png"))
  broken = tmp_path / "broken.png"
  broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
  with pytest.raises(files.MediaError, match="broken.png: not a readable image"):
    images.load_image(str(broken))
  with pytest.raises(OSError):
    images.decode_image(broken.read_bytes())


@pytest.mark.parametrize("ext", [".png", ".webp", ".tiff", ".jpg", ".bmp"])
def test_save_image_keeps_alpha_where_the_format_can(tmp_path, ext):
  path = str(tmp_path / f"out{ext}")
  images.save_image(path, RGB, alpha=ALPHA)
  loaded = images.load_image(path)
  assert loaded.rgb.shape == (H, W, 3)
  assert (loaded.alpha is not None) == (ext in (".png", ".webp", ".tiff"))
  if ext in (".png", ".tiff", ".bmp"):
    np.testing.assert_array_equal(loaded.rgb, RGB)
  with pytest.raises(files.MediaError, match="unknown image extension"):
    images.save_image(str(tmp_path / "out.xyz"), RGB)
