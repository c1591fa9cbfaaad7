"""Tests for pix2pix_jax.metrics against scikit-image, published data and NumPy formulas."""

import jax
import numpy as np
import pytest
from scipy import stats
from skimage import color as skcolor
from skimage import data
from skimage import metrics as skmetrics

from pix2pix_jax import metrics

# Sharma, Wu & Dalal (2005), Table 1: the published CIEDE2000 test pairs.
SHARMA_2005 = [
  # L1, a1, b1, L2, a2, b2, dE00
  (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
  (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
  (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
  (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
  (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
  (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
  (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
  (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
  (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
  (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
  (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
  (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
  (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
  (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
  (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
  (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
  (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
  (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
  (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
  (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
  (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
  (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
  (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
  (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
  (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
  (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
  (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
  (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
  (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
  (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
  (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
  (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
  (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
  (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


def _pairs() -> list[tuple[np.ndarray, np.ndarray]]:
  """(pred, target) batches [N, H, W, 3]: noisy / shifted real photos and random images."""
  rng = np.random.default_rng(0)
  photos = np.stack(
    [im[:96, :128] / 255.0 for im in (data.astronaut(), data.chelsea(), data.coffee())]
  )
  noisy = np.clip(photos + rng.normal(0, 0.08, photos.shape), 0, 1)
  # A colourisation-like error: same luminance structure, chroma shifted.
  recoloured = np.clip(photos[..., [0, 2, 1]] * 0.8 + 0.1, 0, 1)
  random = rng.random((2, 40, 33, 3))
  return [(noisy, photos), (recoloured, photos), (random, rng.random((2, 40, 33, 3)))]


def _ssim_ref(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
  return np.array(
    [
      skmetrics.structural_similarity(
        p,
        t,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1,
        channel_axis=-1,
      )
      for p, t in zip(pred, target, strict=True)
    ]
  )


@pytest.mark.parametrize("index", range(3))
def test_psnr_matches_skimage(index):
  pred, target = _pairs()[index]
  expected = [
    skmetrics.peak_signal_noise_ratio(t, p, data_range=1) for p, t in zip(pred, target, strict=True)
  ]
  got = metrics.psnr(pred, target)
  assert got.shape == (len(pred),)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert np.isinf(np.asarray(metrics.psnr(target, target))).all()
  np.testing.assert_allclose(metrics.psnr(pred * 255, target * 255, 255.0), expected, rtol=1e-5)


@pytest.mark.parametrize("index", range(3))
def test_ssim_matches_skimage(index):
  pred, target = _pairs()[index]
  got = jax.jit(metrics.ssim)(pred, target)
  assert got.shape == (len(pred),)
  np.testing.assert_allclose(got, _ssim_ref(pred, target), atol=1e-4)


def test_ssim_of_identical_images_is_one():
  _, target = _pairs()[0]
  np.testing.assert_allclose(metrics.ssim(target, target), 1.0, atol=1e-5)


def test_colorfulness_formula():
  for pred, _ in _pairs():
    rgb = pred * 255.0
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    expected = np.sqrt(rg.std(axis=(1, 2)) ** 2 + yb.std(axis=(1, 2)) ** 2) + 0.3 * np.sqrt(
      rg.mean(axis=(1, 2)) ** 2 + yb.mean(axis=(1, 2)) ** 2
    )
    np.testing.assert_allclose(metrics.colorfulness(pred), expected, rtol=1e-4)


def test_colorfulness_orders_gray_and_colour():
  _, photos = _pairs()[0]
  gray = np.repeat(photos.mean(-1, keepdims=True), 3, -1)
  np.testing.assert_allclose(metrics.colorfulness(gray), 0.0, atol=1e-3)
  assert (np.asarray(metrics.colorfulness(photos)) > 10).all()


@pytest.mark.parametrize("index", range(3))
def test_ciede2000_matches_skimage(index):
  pred, target = _pairs()[index]
  expected = skcolor.deltaE_ciede2000(skcolor.rgb2lab(pred), skcolor.rgb2lab(target)).mean((1, 2))
  got = metrics.ciede2000(pred, target)
  assert got.shape == (len(pred),)
  np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(metrics.ciede2000(target, target), 0.0, atol=1e-3)


def test_ciede2000_published_pairs():
  table = np.array(SHARMA_2005)
  lab1, lab2, expected = table[:, :3], table[:, 3:6], table[:, 6]
  # The table is given to 4 decimals; the formula is symmetric in its arguments.
  np.testing.assert_allclose(metrics.ciede2000_lab(lab1, lab2), expected, atol=1e-4)
  np.testing.assert_allclose(metrics.ciede2000_lab(lab2, lab1), expected, atol=1e-4)
  np.testing.assert_allclose(jax.jit(metrics.ciede2000_lab)(lab1, lab2), expected, atol=1e-4)


def _ab_histogram_ref(rgb: np.ndarray) -> np.ndarray:
  ab = np.clip(skcolor.rgb2lab(rgb)[..., 1:].reshape(-1, 2), -110, 110)
  edges = np.linspace(-110, 110, 33)
  hist, _, _ = np.histogram2d(ab[:, 0], ab[:, 1], bins=[edges, edges])
  return hist / hist.sum()


def _video() -> np.ndarray:
  # A camera pan over a photo: consecutive frames have almost the same colours.
  im = data.coffee() / 255.0
  return np.stack([im[40 : 40 + 96, 8 * t : 8 * t + 128] for t in range(4)])


def test_ab_histogram_matches_numpy():
  for frames in (_video(), np.random.default_rng(1).random((3, 32, 32, 3))):
    got = np.asarray(metrics.ab_histogram(frames))
    assert got.shape == (len(frames), 32, 32)
    np.testing.assert_allclose(got.sum((1, 2)), 1.0, rtol=1e-6)
    for g, frame in zip(got, frames, strict=True):
      np.testing.assert_allclose(g, _ab_histogram_ref(frame), atol=2e-3)


def test_temporal_consistency_matches_numpy():
  rng = np.random.default_rng(2)
  for frames in (_video(), rng.random((3, 32, 32, 3)) ** np.array([1.0, 2.0, 0.5])):
    hists = [_ab_histogram_ref(f) for f in frames]
    expected = [1 - 0.5 * np.abs(a - b).sum() for a, b in zip(hists[:-1], hists[1:], strict=True)]
    got = jax.jit(metrics.temporal_consistency)(frames)
    assert got.shape == (len(frames) - 1,)
    np.testing.assert_allclose(got, expected, atol=3e-3)


def test_temporal_consistency_detects_colour_flicker():
  frames = _video()
  np.testing.assert_allclose(
    metrics.temporal_consistency(np.stack([frames[0]] * 3)), 1.0, atol=1e-6
  )
  steady = np.asarray(metrics.temporal_consistency(frames))
  # Every other frame with red and blue swapped: the hues flip while the content is unchanged.
  flicker = frames.copy()
  flicker[1::2] = flicker[1::2, ..., ::-1]
  flickering = np.asarray(metrics.temporal_consistency(flicker))
  assert steady.min() > 0.7 and steady.max() <= 1.0
  assert flickering.min() >= 0.0
  assert flickering.max() < 0.5 * steady.min()


def test_summarize():
  rng = np.random.default_rng(3)
  values = {"psnr": rng.normal(25, 3, 200), "ssim": rng.uniform(0.5, 1, 50), "one": np.array([2.0])}
  summary = metrics.summarize(values)
  assert set(summary) == set(values)
  for name in ("psnr", "ssim"):
    v = values[name]
    low, high = stats.norm.interval(0.95, loc=v.mean(), scale=stats.sem(v))
    s = summary[name]
    assert s["n"] == len(v)
    np.testing.assert_allclose(s["mean"], v.mean(), rtol=1e-12)
    np.testing.assert_allclose(s["std"], v.std(ddof=1), rtol=1e-12)
    np.testing.assert_allclose([s["ci95_low"], s["ci95_high"]], [low, high], rtol=1e-5)
  assert summary["one"]["mean"] == 2.0 and np.isnan(summary["one"]["ci95_low"])
