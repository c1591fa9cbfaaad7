"""Colourisation metrics: PSNR, SSIM, colourfulness, CIEDE2000, temporal consistency, and a host
summary with confidence intervals. Per-image metrics take sRGB floats in [0, 1] [N, H, W, 3] and
return float32 [N], in pure `jax.numpy` so that they jit and shard like the model.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import color

_IMAGE_AXES = (-3, -2, -1)

# SSIM constants of Wang et al. 2004, as in skimage with gaussian_weights=True.
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): scipy's truncate=3.5 -> an 11-tap window
_SSIM_K1, _SSIM_K2 = 0.01, 0.03

# Temporal consistency: a 2-D histogram of Lab ab over [-110, 110]^2 (the model's ab scale).
_HIST_BINS = 32
_HIST_AB_RANGE = 110.0


def _f32(x: jax.Array) -> jax.Array:
  return jnp.asarray(x, jnp.float32)


def psnr(pred: jax.Array, target: jax.Array, max_val: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio in dB per image, [N]; +inf for identical images."""
  mse = jnp.mean((_f32(pred) - _f32(target)) ** 2, axis=_IMAGE_AXES)
  return 10.0 * jnp.log10(max_val**2 / mse)


def _gaussian_window() -> np.ndarray:
  x = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=np.float64)
  w = np.exp(-0.5 * (x / _SSIM_SIGMA) ** 2)
  return w / w.sum()


def _filter_valid(x: jax.Array) -> jax.Array:
  """Separable Gaussian filter over H and W of [..., H, W, C], keeping only the 'valid' region.

  skimage filters with reflected borders and then crops the window radius from every side,
  which leaves exactly the pixels whose window never touches the border: a valid filter.
  Shifted sums instead of a convolution keep full float32 precision on accelerators.
  """
  w = _gaussian_window()
  taps = len(w)
  h, wd = x.shape[-3], x.shape[-2]
  x = sum(float(wk) * x[..., k : h - taps + 1 + k, :, :] for k, wk in enumerate(w))
  return sum(float(wk) * x[..., :, k : wd - taps + 1 + k, :] for k, wk in enumerate(w))


def ssim(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Structural similarity per image, [N], data range 1, mean over channels.

  Gaussian window (sigma 1.5, 11 taps), K1 0.01, K2 0.03, population covariance: the same
  number as `skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)`. Images must be at least 11x11.
  """
  x, y = _f32(pred), _f32(target)
  c1, c2 = _SSIM_K1**2, _SSIM_K2**2
  mu_x, mu_y = _filter_valid(x), _filter_valid(y)
  # (Co)variances are shift invariant; centring first avoids float32 cancellation in
  # E[x^2] - E[x]^2 on bright, flat regions.
  xc = x - jnp.mean(x, axis=(-3, -2), keepdims=True)
  yc = y - jnp.mean(y, axis=(-3, -2), keepdims=True)
  m_xc, m_yc = _filter_valid(xc), _filter_valid(yc)
  var_x = _filter_valid(xc * xc) - m_xc**2
  var_y = _filter_valid(yc * yc) - m_yc**2
  cov = _filter_valid(xc * yc) - m_xc * m_yc
  s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
  return jnp.mean(s, axis=_IMAGE_AXES)


def colorfulness(rgb: jax.Array) -> jax.Array:
  """Hasler & Suesstrunk (2003) colourfulness per image, [N], on the 0..255 scale.

  rg = R - G, yb = (R + G) / 2 - B; M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 +
  mean_yb^2), with population standard deviations over the pixels. 0 for a gray image.
  """
  rgb = _f32(rgb) * 255.0
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  rg = r - g
  yb = 0.5 * (r + g) - b
  axes = (-2, -1)
  std = jnp.sqrt(jnp.var(rg, axis=axes) + jnp.var(yb, axis=axes))
  mean = jnp.sqrt(jnp.mean(rg, axis=axes) ** 2 + jnp.mean(yb, axis=axes) ** 2)
  return std + 0.3 * mean


def ciede2000_lab(lab1: jax.Array, lab2: jax.Array) -> jax.Array:
  """CIEDE2000 colour difference of Lab colours [..., 3] -> [...] (kL = kC = kH = 1).

  Follows Sharma, Wu & Dalal (2005). The hue difference comes from the angle between the two
  (a', b) vectors, so that hues exactly 180 degrees apart (the published pairs 9-12) resolve
  the same way in float32 as in exact arithmetic.
  """
  lab1, lab2 = _f32(lab1), _f32(lab2)
  l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
  l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
  pow25_7 = 25.0**7

  c_mean = 0.5 * (jnp.hypot(a1, b1) + jnp.hypot(a2, b2))
  g = 0.5 * (1.0 - jnp.sqrt(c_mean**7 / (c_mean**7 + pow25_7)))
  a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
  c1p, c2p = jnp.hypot(a1p, b1), jnp.hypot(a2p, b2)
  h1 = jnp.mod(jnp.degrees(jnp.arctan2(b1, a1p)), 360.0)
  h2 = jnp.mod(jnp.degrees(jnp.arctan2(b2, a2p)), 360.0)

  # Signed hue difference h2 - h1 wrapped into [-180, 180]. At exactly 180 degrees apart,
  # Sharma's |h2 - h1| <= 180 rule keeps the unwrapped sign, i.e. -180 when h1 > h2.
  # Compared as rounded products: under jit, p - q may be fused into an FMA that is not 0
  # even when p == q.
  p, q = a1p * b2, b1 * a2p
  cross = jnp.where(p == q, 0.0, p - q)
  dot = a1p * a2p + b1 * b2
  dh = jnp.degrees(jnp.arctan2(cross, dot))
  dh = jnp.where((cross == 0) & (dot < 0), jnp.where(h1 > h2, -180.0, 180.0), dh)
  chroma_product = c1p * c2p
  zero_chroma = chroma_product == 0
  dh = jnp.where(zero_chroma, 0.0, dh)
  h_mean = jnp.where(zero_chroma, h1 + h2, jnp.mod(h1 + 0.5 * dh, 360.0))

  dl = l2 - l1
  dc = c2p - c1p
  d_big_h = 2.0 * jnp.sqrt(chroma_product) * jnp.sin(jnp.radians(0.5 * dh))

  l_mean = 0.5 * (l1 + l2)
  cp_mean = 0.5 * (c1p + c2p)
  t = (
    1.0
    - 0.17 * jnp.cos(jnp.radians(h_mean - 30.0))
    + 0.24 * jnp.cos(jnp.radians(2.0 * h_mean))
    + 0.32 * jnp.cos(jnp.radians(3.0 * h_mean + 6.0))
    - 0.20 * jnp.cos(jnp.radians(4.0 * h_mean - 63.0))
  )
  d_theta = 30.0 * jnp.exp(-(((h_mean - 275.0) / 25.0) ** 2))
  r_c = 2.0 * jnp.sqrt(cp_mean**7 / (cp_mean**7 + pow25_7))
  s_l = 1.0 + 0.015 * (l_mean - 50.0) ** 2 / jnp.sqrt(20.0 + (l_mean - 50.0) ** 2)
  s_c = 1.0 + 0.045 * cp_mean
  s_h = 1.0 + 0.015 * cp_mean * t
  r_t = -jnp.sin(jnp.radians(2.0 * d_theta)) * r_c

  tl, tc, th = dl / s_l, dc / s_c, d_big_h / s_h
  return jnp.sqrt(jnp.maximum(tl**2 + tc**2 + th**2 + r_t * tc * th, 0.0))


def ciede2000(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean CIEDE2000 over the pixels of each sRGB image pair, [N]."""
  de = ciede2000_lab(color.rgb_to_lab(pred), color.rgb_to_lab(target))
  return jnp.mean(de, axis=(-2, -1))


def _ab_counts(rgb: jax.Array) -> jax.Array:
  """Integer 32x32 Lab ab histogram per image: [..., H, W, 3] -> [..., 32 * 32]."""
  ab = color.rgb_to_lab(rgb)[..., 1:]
  scale = _HIST_BINS / (2.0 * _HIST_AB_RANGE)
  idx = jnp.clip(jnp.floor((ab + _HIST_AB_RANGE) * scale), 0, _HIST_BINS - 1).astype(jnp.int32)
  flat = idx[..., 0] * _HIST_BINS + idx[..., 1]
  batch_shape = flat.shape[:-2]
  flat = flat.reshape((-1, flat.shape[-2] * flat.shape[-1]))
  counts = jax.vmap(lambda f: jnp.bincount(f, length=_HIST_BINS**2))(flat)
  return counts.reshape(batch_shape + (_HIST_BINS**2,))


def ab_histogram(rgb: jax.Array) -> jax.Array:
  """Normalised 2-D histogram of Lab ab per image: [..., H, W, 3] -> [..., 32, 32].

  Bins are fixed: 32 x 32 equal bins over [-110, 110]^2 (a along the first axis); values
  outside are counted in the edge bins. Each histogram sums to 1.
  """
  counts = _ab_counts(rgb)
  hist = counts.astype(jnp.float32) / (rgb.shape[-3] * rgb.shape[-2])
  return hist.reshape(counts.shape[:-1] + (_HIST_BINS, _HIST_BINS))


def temporal_consistency(frames: jax.Array) -> jax.Array:
  """Colour-distribution consistency of consecutive video frames: [T, H, W, 3] -> [T-1].

  c_t = 1 - 0.5 * sum |hist_t - hist_{t+1}|, where hist is `ab_histogram` (the normalised
  32x32 histogram of Lab ab over [-110, 110]^2). This is one minus the total-variation distance
  between the two chroma distributions: 1 when consecutive frames have the same colour
  distribution, 0 when they share no ab bin. It ignores where colours sit in the frame, so it
  measures colour flicker, not motion.
  """
  counts = _ab_counts(frames)
  # Differences of integer counts are exact, so the result stays inside [0, 1].
  moved = jnp.sum(jnp.abs(counts[1:] - counts[:-1]), axis=-1).astype(jnp.float32)
  return 1.0 - 0.5 * moved / (frames.shape[-3] * frames.shape[-2])


def summarize(values: dict[str, np.ndarray]) -> dict[str, dict[str, float | int]]:
  """Mean and 95% confidence interval (normal approximation) of each metric's values.

  Returns {name: {"mean", "std", "ci95_low", "ci95_high", "n"}}; std is the sample standard
  deviation and the interval mean +- 1.96 std / sqrt(n). With one value the interval is NaN.
  Non-finite values (e.g. the infinite PSNR of an exact copy) are kept, so they show up.
  """
  summary = {}
  for name, v in values.items():
    v = np.asarray(v, np.float64).ravel()
    n = v.size
    mean = float(np.mean(v)) if n else math.nan
    std = float(np.std(v, ddof=1)) if n > 1 else math.nan
    half = 1.96 * std / math.sqrt(n) if n > 1 else math.nan
    summary[name] = {
      "mean": mean,
      "std": std,
      "ci95_low": mean - half,
      "ci95_high": mean + half,
      "n": n,
    }
  return summary


def lower_is_better(name: str) -> bool:
  """Whether a smaller value of the metric called `name` is better (distances and losses)."""
  return any(word in name for word in ("ciede", "loss", "l1", "diff"))
