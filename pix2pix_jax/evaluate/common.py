"""What is evaluated, one jit-able batch at a time: the generator's colourisation of uint8 images,
the gray, mean-chroma and hint baselines, and the per-image metrics (`evaluator` runs them over
eval batches)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax import color, metrics
from pix2pix_jax.hints import device as hint_ops


def predict_rgb(
  generator: nn.Module,
  color_space: str,
  g_variables: dict[str, Any],
  images: jax.Array,
  hint_channels: jax.Array | None = None,
) -> jax.Array:
  """uint8 RGB batch -> the generator's colourisation of its luminance, sRGB in [0, 1].
  hint_channels: `hint_ops.encode`'s [B,H,W,3] for a hint generator (default: no hints)."""
  inputs = color.model_input(color.uint8_to_float(images), color_space)
  g_inputs = inputs if hint_channels is None else jnp.concatenate([inputs, hint_channels], -1)
  outputs = generator.apply(g_variables, g_inputs, train=False)
  return color.to_rgb(inputs, outputs, color_space)


def image_metrics(predicted: jax.Array, real_uint8: jax.Array) -> dict[str, jax.Array]:
  """Per-image metrics of sRGB predictions in [0, 1] against uint8 ground truth: each [N]."""
  real = color.uint8_to_float(real_uint8)
  return {
    "psnr": metrics.psnr(predicted, real),
    "ssim": metrics.ssim(predicted, real),
    "ciede2000": metrics.ciede2000(predicted, real),
    "colorfulness": metrics.colorfulness(predicted),
    "colorfulness_diff": jnp.abs(metrics.colorfulness(predicted) - metrics.colorfulness(real)),
  }


def baselines(images: jax.Array, mean_ab: jax.Array) -> dict[str, jax.Array]:
  """Trivial colourisations of uint8 images: L with zero chroma, and L with the mean chroma."""
  lightness = color.luminance(color.uint8_to_float(images))
  zeros = jnp.zeros(lightness.shape[:-1] + (2,), jnp.float32)
  return {
    "gray": color.combine(lightness, zeros),
    "mean_chroma": color.combine(lightness, zeros + mean_ab),
  }


def mean_ab_sums(images: jax.Array, mask: jax.Array) -> jax.Array:
  """[sum over real images of each image's mean a, ... of mean b, number of real images]."""
  ab = jnp.mean(color.rgb_to_lab(color.uint8_to_float(images))[..., 1:], axis=(1, 2))
  weights = mask.astype(jnp.float32)
  return jnp.concatenate([jnp.sum(ab * weights[:, None], axis=0), jnp.sum(weights)[None]])


def hinted_predictions(
  generator: nn.Module,
  color_space: str,
  g_variables: dict[str, Any],
  images: jax.Array,
  keys: jax.Array,
  *,
  num_points: int,
  patch: int = 1,
) -> dict[str, jax.Array]:
  """Colour hints sampled from the uint8 ground truth (`hint_ops.sample_points`, one key per image):
  the hint generator's colourisation with them ("model_hints") and two propagations, sRGB in
  [0, 1], L kept: "nearest_hint" (each pixel takes the ab of its nearest hint) and
  "luminance_fill" (`hint_ops.propagate` with the generator's luminance weight: the fill that the
  generator corrects)."""
  rgb = color.uint8_to_float(images)
  lab = color.rgb_to_lab(rgb)
  hint_ab, mask, nearest = hint_ops.sample_points(keys, lab[..., 1:], num_points, patch)
  fill, _ = hint_ops.propagate(hint_ab, mask, lab[..., 0], generator.hint_luminance_weight)
  model = predict_rgb(generator, color_space, g_variables, images, hint_ops.encode(hint_ab, mask))
  lightness = color.luminance(rgb)
  return {
    "model_hints": model,
    "nearest_hint": color.combine(lightness, nearest),
    "luminance_fill": color.combine(lightness, fill),
  }
