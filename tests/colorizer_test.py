"""The Colorizer: shapes, exact luminance, batch independence, one compile."""

import jax
import numpy as np
import pytest
from helpers import frames, make_colorizer, psnr, tiny_config

from pix2pix_jax import color


@pytest.fixture(scope="module")
def colorizer():
  return make_colorizer(tiny_config(), batch_size=6)


def test_batch_rounded_to_devices(colorizer):
  assert jax.device_count() == 4  # conftest
  assert colorizer.batch_size == 8


@pytest.mark.parametrize("n", [1, 8, 11])
def test_shape_and_luminance_kept(colorizer, n):
  x = frames(n)
  out = colorizer(x)
  assert out.shape == x.shape and out.dtype == np.uint8
  lum_in = np.asarray(color.luminance(x / 255.0))
  lum_out = np.asarray(color.luminance(out / 255.0))
  assert psnr(lum_in, lum_out, 100.0) > 40.0


def test_gray_input_gives_rgb(colorizer):
  gray = frames(3)[..., 0]
  out = colorizer(gray)
  assert out.shape == gray.shape + (3,)
  lum = np.asarray(color.luminance(out / 255.0))[..., 0]
  expected = np.asarray(color.luminance(np.repeat(gray[..., None], 3, -1) / 255.0))[..., 0]
  assert psnr(lum, expected, 100.0) > 40.0


def test_frames_independent_of_batch_and_padding(colorizer):
  x = frames(11)
  together = colorizer(x)
  alone = np.concatenate([colorizer(x[i : i + 1]) for i in (0, 5, 10)])
  np.testing.assert_array_equal(together[[0, 5, 10]], alone)


def test_generator_compiles_once_across_sizes(colorizer):
  colorizer(frames(3, 20, 30))
  colorizer(frames(9, 41, 17))
  images = colorizer.colorize_images([frames(1, 25, 19)[0], frames(1, 64, 48)[0][..., 0]])
  assert [im.shape for im in images] == [(25, 19, 3), (64, 48, 3)]
  assert colorizer._predict._cache_size() == 1


def test_colorize_images_matches_frames(colorizer):
  x = frames(2, 33, 45)
  images = colorizer.colorize_images(list(x))
  np.testing.assert_array_equal(np.stack(images), colorizer(x))


def test_rgb_model_keeps_luminance(make_tiny_config):
  c = make_colorizer(make_tiny_config(color_space="rgb"), batch_size=4)
  x = frames(2, 40, 24)
  out = c(x)
  lum_in = np.asarray(color.luminance(x / 255.0))
  assert psnr(lum_in, np.asarray(color.luminance(out / 255.0)), 100.0) > 40.0


def test_render_size_must_fit_the_unet(make_tiny_config):
  config = make_tiny_config()
  with pytest.raises(ValueError, match="multiple of 2\\*\\*num_downs"):
    make_colorizer(config, render_size=48)
  assert make_colorizer(config, render_size=64).render_size == 64
