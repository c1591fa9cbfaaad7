"""Tests for pix2pix_jax.color against scikit-image and direct NumPy transcriptions."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import color as skcolor
from skimage import data

from pix2pix_jax import color


def _real_images() -> list[np.ndarray]:
  # Crops keep the tests fast; the three photos cover skin, fur and saturated reds.
  return [im[:192, :192] / 255.0 for im in (data.astronaut(), data.chelsea(), data.coffee())]


def _random_rgb(seed: int = 0, shape=(2, 24, 32, 3)) -> np.ndarray:
  rgb = np.random.default_rng(seed).random(shape)
  # The extremes and the exact sRGB threshold are where piecewise code goes wrong.
  flat = rgb.reshape(-1, 3)
  flat[:4] = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.04045, 0.04045, 0.04045], [1.0, 0.0, 0.0]]
  return flat.reshape(shape)


def _images() -> list[np.ndarray]:
  return [_random_rgb(0), _random_rgb(1, (5, 7, 3))] + _real_images()


@pytest.mark.parametrize("index", range(5))
def test_rgb_to_lab_matches_skimage(index):
  rgb = _images()[index]
  np.testing.assert_allclose(color.rgb_to_lab(rgb), skcolor.rgb2lab(rgb), atol=1e-3)


def test_rgb_to_lab_of_white_and_black():
  lab = np.asarray(color.rgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])))
  # The sRGB matrix's rows sum to D65 only to 5 digits, so white's ab is ~0.005, not 0.
  np.testing.assert_allclose(lab, [[100.0, 0.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-2)
  np.testing.assert_allclose(lab[:, 0], [100.0, 0.0], atol=1e-4)


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
  rng = np.random.default_rng(2)
  lab = np.stack(
    [rng.uniform(0, 100, 4000), rng.uniform(-110, 110, 4000), rng.uniform(-110, 110, 4000)], -1
  ).reshape(40, 100, 3)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # skimage warns about the f(Z) < 0 it clips
    expected = skcolor.lab2rgb(lab)
  got = np.asarray(color.lab_to_rgb(lab))
  assert got.min() >= 0.0 and got.max() <= 1.0
  np.testing.assert_allclose(got, expected, atol=1e-3)


@pytest.mark.parametrize("index", range(5))
def test_round_trip(index):
  rgb = _images()[index]
  np.testing.assert_allclose(color.lab_to_rgb(color.rgb_to_lab(rgb)), rgb, atol=2e-4)


def test_luminance_is_lab_l():
  for rgb in _images():
    lum = np.asarray(color.luminance(rgb))
    assert lum.shape == rgb.shape[:-1] + (1,)
    np.testing.assert_allclose(lum[..., 0], skcolor.rgb2lab(rgb)[..., 0], atol=1e-3)


def test_combine_puts_chroma_on_luminance():
  rgb = _real_images()[2]
  lab = skcolor.rgb2lab(rgb)
  np.testing.assert_allclose(color.combine(lab[..., :1], lab[..., 1:]), rgb, atol=2e-4)


def test_rgb_to_gray_formula():
  for rgb in _images():
    expected = 0.3 * rgb[..., 0] + 0.59 * rgb[..., 1] + 0.11 * rgb[..., 2]
    gray = np.asarray(color.rgb_to_gray(rgb))
    assert gray.shape == rgb.shape[:-1] + (1,)
    np.testing.assert_allclose(gray[..., 0], expected, atol=1e-6)


def test_model_encodings():
  rgb = _real_images()[0]
  lab = skcolor.rgb2lab(rgb)
  gray = 0.3 * rgb[..., 0] + 0.59 * rgb[..., 1] + 0.11 * rgb[..., 2]
  np.testing.assert_allclose(color.model_input(rgb, "rgb")[..., 0], gray * 2 - 1, atol=1e-6)
  np.testing.assert_allclose(color.model_input(rgb, "lab")[..., 0], lab[..., 0] / 50 - 1, atol=1e-4)
  np.testing.assert_allclose(color.model_target(rgb, "rgb"), rgb * 2 - 1, atol=1e-6)
  np.testing.assert_allclose(color.model_target(rgb, "lab"), lab[..., 1:] / 110, atol=1e-5)
  for space in ("rgb", "lab"):
    x, y = color.model_input(rgb, space), color.model_target(rgb, space)
    assert x.shape[-1] == 1 and y.shape[-1] == color.num_output_channels(space)
    assert np.abs(np.asarray(x)).max() <= 1.0 and np.abs(np.asarray(y)).max() <= 1.0


@pytest.mark.parametrize("space", ["rgb", "lab"])
def test_to_rgb_inverts_the_encoding(space):
  rgb = _real_images()[1]
  inputs, outputs = color.model_input(rgb, space), color.model_target(rgb, space)
  np.testing.assert_allclose(color.to_rgb(inputs, outputs, space), rgb, atol=3e-4)


def test_to_rgb_clips_out_of_range_outputs():
  inputs = jnp.zeros((4, 4, 1))
  for space in ("rgb", "lab"):
    outputs = jnp.full((4, 4, color.num_output_channels(space)), 3.0)
    out = np.asarray(color.to_rgb(inputs, outputs, space))
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_predicted_ab():
  rng = np.random.default_rng(3)
  inputs = rng.uniform(-1, 1, (2, 8, 8, 1))
  ab_out = rng.uniform(-0.5, 0.5, (2, 8, 8, 2))
  np.testing.assert_allclose(color.predicted_ab(inputs, ab_out, "lab"), ab_out * 110, atol=1e-4)
  rgb_out = rng.uniform(-1, 1, (2, 8, 8, 3))
  expected = skcolor.rgb2lab((rgb_out + 1) / 2)[..., 1:]
  np.testing.assert_allclose(color.predicted_ab(inputs, rgb_out, "rgb"), expected, atol=1e-3)


def test_color_space_names():
  assert color.num_output_channels("rgb") == 3
  assert color.num_output_channels("lab") == 2
  rgb = jnp.zeros((2, 2, 3))
  for fn in (
    color.num_output_channels,
    lambda s: color.model_input(rgb, s),
    lambda s: color.model_target(rgb, s),
    lambda s: color.to_rgb(rgb[..., :1], rgb, s),
    lambda s: color.predicted_ab(rgb[..., :1], rgb, s),
  ):
    with pytest.raises(ValueError, match="yuv"):
      fn("yuv")


def test_gradients_are_finite():
  rgb = jnp.asarray(_random_rgb(4))
  g = jax.grad(lambda x: jnp.sum(color.rgb_to_lab(x) ** 2))(rgb)
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0
  g = jax.grad(lambda x: jnp.sum(color.luminance(x)))(rgb)
  assert np.isfinite(np.asarray(g)).all()
  # Black, white, zero chroma and thresholds on the Lab side.
  lab = jnp.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [8.0, 0.0, 0.0], [50.0, 20.0, -30.0]])
  g = jax.grad(lambda x: jnp.sum(color.lab_to_rgb(x)))(lab)
  assert np.isfinite(np.asarray(g)).all()
  # The path the Lab model trains through (evaluation / perceptual losses).
  inputs = color.model_input(rgb, "lab")
  g = jax.grad(lambda o: jnp.sum(color.to_rgb(inputs, o, "lab")))(jnp.zeros(rgb.shape[:-1] + (2,)))
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0


def test_batched_jit_and_dtype():
  rgb = _random_rgb(5, (2, 3, 6, 5, 3))
  lab = jax.jit(color.rgb_to_lab)(rgb)
  assert lab.shape == rgb.shape and lab.dtype == jnp.float32
  np.testing.assert_allclose(
    lab, skcolor.rgb2lab(rgb.reshape(-1, 5, 3)).reshape(rgb.shape), atol=1e-3
  )
  assert color.rgb_to_lab(jnp.asarray(rgb, jnp.bfloat16)).dtype == jnp.float32


def test_uint8_conversions():
  every = np.arange(256, dtype=np.uint8)
  f = np.asarray(color.uint8_to_float(every))
  assert f.dtype == np.float32
  np.testing.assert_allclose(f, every / 255.0, atol=1e-7)
  back = np.asarray(color.float_to_uint8(f))
  assert back.dtype == np.uint8
  np.testing.assert_array_equal(back, every)
  x = np.array([-0.5, 0.3 / 255, 0.7 / 255, 100.4 / 255, 100.6 / 255, 1.5])
  np.testing.assert_array_equal(color.float_to_uint8(x), [0, 0, 1, 100, 101, 255])
