"""Temporal smoothing of video colour: an EMA that resets at scene cuts, carried across batches."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import frames, make_colorizer, psnr, tiny_config

from pix2pix_jax import color, parallel
from pix2pix_jax.colorize.video import colourise, hint_track, temporal


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
  state = temporal.initial_state(r)
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


def test_a_cut_between_shots_of_one_tone_is_found_on_the_device_and_in_the_first_pass():
  """Swapping a frame's dark and bright halves keeps its histogram; a 1 px pan is no cut."""
  h, w = 32, 32
  ramp = np.tile(np.linspace(40, 215, w, dtype=np.float32), (h, 1))
  halves = np.where(np.arange(w) < w // 2, 60.0, 190.0)[None].repeat(h, 0) + ramp * 0.1
  shot = [np.roll(halves, t, axis=1) for t in range(3)]  # a pan, 1 px a frame
  luma = np.rint(np.stack(shot + [halves[:, ::-1]] + shot[:2])).astype(np.uint8)
  expected = [1, 0, 0, 1, 1, 0]  # the swap, then the cut back to the first shot

  detector = hint_track.CutDetector(temporal.DEFAULT_CUT_THRESHOLD)
  assert [int(detector(frame)) for frame in luma] == expected

  mesh = parallel.make_mesh()
  n = 8  # a batch the 4 test devices divide; frames 6-7 are padding
  x = np.zeros((n, h, w, 1), np.float32)
  x[: len(luma), ..., 0] = luma / 127.5 - 1.0
  _, cuts, _ = temporal._smooth(
    jnp.zeros((n, h, w, 2)),
    jnp.asarray(x),
    jnp.int32(len(luma)),
    temporal.initial_state(h),
    jnp.float32(0.5),
    jnp.float32(temporal.DEFAULT_CUT_THRESHOLD),
    replicated=parallel.replicated(mesh),
  )
  assert np.asarray(cuts).astype(int).tolist() == expected + [0, 0]


def test_smoothing_state_carries_across_batches(colorizer):
  x = np.stack([np.roll(frames(1, seed=3)[0], t, axis=1) for t in range(16)])  # a pan: one shot
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
