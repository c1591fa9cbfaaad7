"""Temporal smoothing of video colour: an EMA that resets at scene cuts, carried across batches."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import frames, make_colorizer, psnr, tiny_config

from pix2pix_jax import color, parallel
from pix2pix_jax.colorize.video import colourise, temporal


@pytest.fixture(scope="module")
def colorizer():
  """Batches of 6, rounded up to 8 on the 4 test devices (conftest's has batches of 4)."""
  return make_colorizer(tiny_config(), batch_size=6)


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
  first, state, _ = stages(x[:8], 0, stages.initial_state())
  second, _, cuts = stages(x[8:], 8, state)
  whole = np.concatenate([np.asarray(first), np.asarray(second)])
  assert not np.asarray(cuts).any()
  plain = colorizer(x)
  # Smoothing changes colour only: the lightness is still the source's.
  assert not np.array_equal(whole, plain)
  lum_in = np.asarray(color.luminance(x / 255.0))
  assert psnr(lum_in, np.asarray(color.luminance(whole / 255.0)), 100.0) > 40.0
