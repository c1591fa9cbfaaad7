"""Colorizer: shapes, exact luminance, batch independence, one compile, temporal smoothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pix_jax import color, models, parallel
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import colourise, temporal


def make_colorizer(config, **kwargs):
  generator = models.make_generator(config)
  size = config.data.crop_size
  variables = generator.init(jax.random.key(0), jnp.zeros((1, size, size, 1)), train=False)
  return colorizer_lib.Colorizer.from_config(config, variables, **kwargs)


@pytest.fixture(scope="module")
def colorizer():
  from helpers import tiny_config

  return make_colorizer(tiny_config(), batch_size=6)


def frames(n, h=37, w=53, seed=0):
  rng = np.random.default_rng(seed)
  # Smooth colourful content (random pixels would be mostly out of any model's domain).
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  base = np.stack([np.sin(6 * x + 1), np.cos(5 * y), np.sin(4 * (x + y))], -1) * 0.4 + 0.5
  shift = rng.uniform(0, 0.2, (n, 1, 1, 3))
  return np.clip((base[None] + shift) * 255, 0, 255).astype(np.uint8)


def psnr(a, b, peak):
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return 10 * np.log10(peak**2 / max(mse, 1e-12))


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


def test_smoothing_is_an_ema_that_resets_at_cuts():
  mesh = parallel.make_mesh()
  r, n = 4, 8
  ab = jnp.arange(n, dtype=jnp.float32)[:, None, None, None] * jnp.ones((n, r, r, 2))
  # Frames 0-4 dark, 5-7 bright: one cut at 5; frame 7 is padding.
  x = jnp.where(jnp.arange(n)[:, None, None, None] < 5, -0.8, 0.8) * jnp.ones((n, r, r, 1))
  state = temporal.SmoothState(jnp.zeros((r, r, 2)), jnp.zeros((32,)), jnp.zeros((), bool))
  smoothed, cuts, state = temporal._smooth(
    ab,
    x,
    jnp.int32(7),
    state,
    jnp.float32(0.5),
    jnp.float32(0.3),
    replicated=parallel.replicated(mesh),
  )
  expected, prev = [], None
  for t in range(n):
    prev = t if t in (0, 5) else 0.5 * prev + 0.5 * t
    expected.append(prev)
  np.testing.assert_allclose(np.asarray(smoothed)[:, 0, 0, 0], expected, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(cuts), [1, 0, 0, 0, 0, 1, 0, 0])
  # The state is that of frame 6, the last valid one (7 is padding).
  np.testing.assert_allclose(np.asarray(state.ab)[0, 0, 0], expected[6], rtol=1e-6)


def test_smoothing_state_carries_across_batches(colorizer):
  x = frames(16, seed=3)
  stages = colourise.ClipColorizer(colorizer, temporal.Smoothing(0.7))
  first, state, _ = stages(x[:8], stages.initial_state())
  second, _, cuts = stages(x[8:], state)
  whole = np.concatenate([np.asarray(first), np.asarray(second)])
  assert not np.asarray(cuts).any()
  plain = colorizer(x)
  # Smoothing changes colour only: the lightness is still the source's.
  assert not np.array_equal(whole, plain)
  lum_in = np.asarray(color.luminance(x / 255.0))
  assert psnr(lum_in, np.asarray(color.luminance(whole / 255.0)), 100.0) > 40.0
