"""Colour conversions: sRGB <-> CIE Lab, grayscale, and the model's encodings (rgb: 0.3 R +
0.59 G + 0.11 B in, RGB out, both in [-1, 1]; lab: L / 50 - 1 in, ab / 110 out). Pure, batched
float32 `jax.numpy`; piecewise branches keep the branch not taken finite, since a NaN there still
poisons the gradient of `jnp.where`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# sRGB (IEC 61966-2-1) primaries with the D65 white point: linear RGB -> CIE XYZ.
_XYZ_FROM_RGB = np.array(
  [
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
  ]
)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
# CIE standard illuminant D65, 2 degree observer, Y normalised to 1.
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])

# CIE Lab constants: f(t) = cbrt(t) above (6/29)^3, linear below.
_DELTA = 6.0 / 29.0
_LAB_EPSILON = _DELTA**3
_LAB_SLOPE = 1.0 / (3.0 * _DELTA**2)

# sRGB transfer function thresholds.
_SRGB_ENCODED_THRESHOLD = 0.04045
_SRGB_LINEAR_THRESHOLD = 0.0031308

_COLOR_SPACES = ("rgb", "lab")
_L_SCALE = 50.0  # model input: L / 50 - 1 spans [-1, 1]
_AB_SCALE = 110.0  # model output: ab / 110 keeps the sRGB gamut inside [-1, 1]


def _f32(x: jax.Array) -> jax.Array:
  return jnp.asarray(x, jnp.float32)


def _mix(x: jax.Array, matrix: np.ndarray) -> jax.Array:
  """x @ matrix.T over the last axis, as explicit float32 sums.

  Not a matmul: on accelerators a float32 matmul may run at reduced (TF32 / bfloat16)
  precision by default, which costs about 1e-2 in Lab.
  """
  return jnp.stack(
    [sum(float(m) * x[..., j] for j, m in enumerate(row)) for row in matrix], axis=-1
  )


def _srgb_to_linear(c: jax.Array) -> jax.Array:
  """Removes the sRGB gamma."""
  # The power branch only sees arguments above the threshold, so its gradient stays finite.
  high = ((jnp.maximum(c, _SRGB_ENCODED_THRESHOLD) + 0.055) / 1.055) ** 2.4
  return jnp.where(c > _SRGB_ENCODED_THRESHOLD, high, c / 12.92)


def _linear_to_srgb(c: jax.Array) -> jax.Array:
  """Applies the sRGB gamma."""
  high = 1.055 * jnp.maximum(c, _SRGB_LINEAR_THRESHOLD) ** (1.0 / 2.4) - 0.055
  return jnp.where(c > _SRGB_LINEAR_THRESHOLD, high, 12.92 * c)


def _lab_f(t: jax.Array) -> jax.Array:
  # cbrt has an infinite derivative at 0; clamping keeps it away from there.
  return jnp.where(
    t > _LAB_EPSILON, jnp.cbrt(jnp.maximum(t, _LAB_EPSILON)), t * _LAB_SLOPE + 4.0 / 29.0
  )


def _lab_f_inv(t: jax.Array) -> jax.Array:
  return jnp.where(t > _DELTA, t**3, (t - 4.0 / 29.0) / _LAB_SLOPE)


def rgb_to_lab(rgb: jax.Array) -> jax.Array:
  """sRGB in [0, 1], shape [..., 3] -> CIE Lab (D65, 2 degree); L in [0, 100]."""
  linear = _srgb_to_linear(_f32(rgb))
  xyz = _mix(linear, _XYZ_FROM_RGB)
  f = _lab_f(xyz / jnp.asarray(_WHITE_D65, jnp.float32))
  fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
  return jnp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: jax.Array) -> jax.Array:
  """CIE Lab (D65, 2 degree), shape [..., 3] -> sRGB clipped to [0, 1]."""
  lab = _f32(lab)
  fy = (lab[..., 0] + 16.0) / 116.0
  fx = fy + lab[..., 1] / 500.0
  # Very large b gives f(Z) < 0, which no colour has; like skimage, clamp it to 0.
  fz = jnp.maximum(fy - lab[..., 2] / 200.0, 0.0)
  xyz = _lab_f_inv(jnp.stack([fx, fy, fz], axis=-1)) * jnp.asarray(_WHITE_D65, jnp.float32)
  linear = _mix(xyz, _RGB_FROM_XYZ)
  return jnp.clip(_linear_to_srgb(linear), 0.0, 1.0)


def rgb_to_gray(rgb: jax.Array) -> jax.Array:
  """0.3 R + 0.59 G + 0.11 B, shape [..., 1]: the grayscale of the original seed experiment."""
  rgb = _f32(rgb)
  return 0.3 * rgb[..., 0:1] + 0.59 * rgb[..., 1:2] + 0.11 * rgb[..., 2:3]


def luminance(rgb: jax.Array) -> jax.Array:
  """Lab lightness L in [0, 100] of sRGB in [0, 1], shape [..., 1]."""
  linear = _srgb_to_linear(_f32(rgb))
  y = _mix(linear, _XYZ_FROM_RGB[1:2])  # the white's Y is 1
  return 116.0 * _lab_f(y) - 16.0


def combine(L: jax.Array, ab: jax.Array) -> jax.Array:  # noqa: N803 (L is the Lab name)
  """Lab lightness [..., 1] and chroma [..., 2] (Lab units) -> sRGB in [0, 1].

  Used to put predicted (possibly upsampled) chroma on the original full-resolution lightness.
  """
  return lab_to_rgb(jnp.concatenate([_f32(L), _f32(ab)], axis=-1))


def num_output_channels(color_space: str) -> int:
  """Channels the generator predicts: 3 for "rgb", 2 (ab) for "lab"."""
  if color_space == "rgb":
    return 3
  if color_space == "lab":
    return 2
  raise ValueError(f"Unknown color_space {color_space!r}; expected one of {_COLOR_SPACES}.")


def model_input(rgb: jax.Array, color_space: str) -> jax.Array:
  """sRGB [..., 3] in [0, 1] -> the generator's one-channel input in [-1, 1]."""
  num_output_channels(color_space)  # validates the name
  if color_space == "rgb":
    return rgb_to_gray(rgb) * 2.0 - 1.0
  return luminance(rgb) / _L_SCALE - 1.0


def input_lightness(inputs: jax.Array, color_space: str) -> jax.Array:
  """The generator's input [..., 1] -> Lab L [..., 1] (0..100); for RGB models, whose input is
  the gray value, the L of that gray."""
  if color_space == "rgb":
    return luminance(jnp.repeat((_f32(inputs) + 1.0) * 0.5, 3, axis=-1))
  return (_f32(inputs) + 1.0) * _L_SCALE


def model_target(rgb: jax.Array, color_space: str) -> jax.Array:
  """sRGB [..., 3] in [0, 1] -> what the generator should output (rgb*2-1, or ab/110)."""
  num_output_channels(color_space)
  if color_space == "rgb":
    return _f32(rgb) * 2.0 - 1.0
  return rgb_to_lab(rgb)[..., 1:] / _AB_SCALE


def to_rgb(inputs: jax.Array, outputs: jax.Array, color_space: str) -> jax.Array:
  """Model input [..., 1] and output [..., C] -> sRGB in [0, 1]."""
  num_output_channels(color_space)
  if color_space == "rgb":
    return jnp.clip((_f32(outputs) + 1.0) * 0.5, 0.0, 1.0)
  return combine(input_lightness(inputs, "lab"), _f32(outputs) * _AB_SCALE)


def predicted_ab(inputs: jax.Array, outputs: jax.Array, color_space: str) -> jax.Array:
  """Lab ab (Lab units), [..., 2], of the prediction; for rgb models, the ab of `to_rgb`."""
  num_output_channels(color_space)
  if color_space == "lab":
    return _f32(outputs) * _AB_SCALE
  return rgb_to_lab(to_rgb(inputs, outputs, color_space))[..., 1:]


def uint8_to_float(x: jax.Array) -> jax.Array:
  """[0, 255] integers -> float32 in [0, 1]."""
  return jnp.asarray(x, jnp.float32) / 255.0


def float_to_uint8(x: jax.Array) -> jax.Array:
  """Float in [0, 1] -> uint8 in [0, 255], rounded to nearest and clipped."""
  return jnp.round(jnp.clip(_f32(x), 0.0, 1.0) * 255.0).astype(jnp.uint8)


# Luminance bands for chroma statistics: shadows, midtones, highlights (hat functions of L).
_BAND_CENTRES = (0.0, 50.0, 100.0)
# A band with few pixels borrows the whole image's statistics, as if this fraction of the
# image's pixels with the global mean and spread were added to it.
_BAND_PRIOR = 0.05


class ChromaStats(NamedTuple):
  """Mean and standard deviation of Lab a and b per luminance band, each [..., bands, 2]."""

  mean: jax.Array
  std: jax.Array


def band_weights(L: jax.Array) -> jax.Array:  # noqa: N803
  """Lab L [..., 1] in [0, 100] -> weights [..., bands] of each luminance band, summing to 1."""
  centres = jnp.asarray(_BAND_CENTRES, jnp.float32)
  width = centres[1] - centres[0]
  return jnp.clip(1.0 - jnp.abs(jnp.clip(_f32(L), 0.0, 100.0) - centres) / width, 0.0, 1.0)


def chroma_stats(L: jax.Array, ab: jax.Array) -> ChromaStats:  # noqa: N803
  """Per-band mean and spread of ab over the H, W axes of L [..., H, W, 1], ab [..., H, W, 2].

  Each pixel counts in the bands by `band_weights`; a band holding few pixels is pulled toward
  the whole image's statistics (`_BAND_PRIOR`), so an image without highlights still has
  sensible highlight statistics.
  """
  ab = _f32(ab)
  w = band_weights(L)[..., :, None]  # [..., H, W, bands, 1]
  x = ab[..., None, :]  # [..., H, W, 1, 2]
  pixels = L.shape[-3] * L.shape[-2]
  axes = (-4, -3)
  mean_all = jnp.mean(ab, axis=(-3, -2))[..., None, :]  # [..., 1, 2]
  square_all = jnp.mean(ab * ab, axis=(-3, -2))[..., None, :]
  prior = _BAND_PRIOR * pixels
  count = jnp.sum(w, axis=axes) + prior  # [..., bands, 1]
  mean = (jnp.sum(w * x, axis=axes) + prior * mean_all) / count
  square = (jnp.sum(w * x * x, axis=axes) + prior * square_all) / count
  return ChromaStats(mean, jnp.sqrt(jnp.maximum(square - mean * mean, 0.0)))


def match_chroma(
  L: jax.Array,  # noqa: N803
  ab: jax.Array,
  source: ChromaStats,
  target: ChromaStats,
  *,
  max_gain: float,
) -> jax.Array:
  """Moves ab [..., H, W, 2] (with statistics `source` [..., bands, 2]) toward the statistics
  `target` (e.g. a reference photo's): per band, ab' = (ab - mean_s) * gain + mean_t with
  gain = std_t / std_s, at most `max_gain`; each pixel blends the bands by its lightness.
  """
  w = band_weights(L)  # [..., H, W, bands]

  def at_pixels(per_band: jax.Array) -> jax.Array:
    # [..., bands, 2] -> [..., H, W, 2]: each pixel's blend of the bands.
    return jnp.sum(w[..., None] * per_band[..., None, None, :, :], axis=-2)

  gain = target.std / jnp.maximum(source.std, target.std / max_gain + 1e-6)
  return (_f32(ab) - at_pixels(source.mean)) * at_pixels(gain) + at_pixels(target.mean)
