"""Evaluation shared by training and `pix2pix-evaluate`: the generator's colourisation of uint8
batches, per-image metrics over padded eval batches, and the trivial gray and mean-chroma
baselines."""

from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import color, metrics, parallel


def predict_rgb(
  generator: nn.Module, color_space: str, g_variables: dict[str, Any], images: jax.Array
) -> jax.Array:
  """uint8 RGB batch -> the generator's colourisation of its luminance, sRGB in [0, 1]."""
  inputs = color.model_input(color.uint8_to_float(images), color_space)
  outputs = generator.apply(g_variables, inputs, train=False)
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


def per_image_values(
  predict_fn: Callable[[jax.Array], jax.Array],
  batches: Iterable[dict[str, np.ndarray]],
  mesh: jax.sharding.Mesh,
) -> dict[str, np.ndarray]:
  """Runs `predict_fn` (uint8 batch -> sRGB [0,1]) over padded eval batches; returns the
  per-image metrics of the real (unpadded) examples, gathered on every process."""
  compute = jax.jit(image_metrics, out_shardings=parallel.replicated(mesh))
  gather = jax.jit(lambda m: m, out_shardings=parallel.replicated(mesh))
  values: dict[str, list[np.ndarray]] = {}
  for batch in batches:
    global_batch = parallel.to_global(batch, mesh)
    per_image = jax.device_get(compute(predict_fn(global_batch["image"]), global_batch["image"]))
    mask = np.asarray(jax.device_get(gather(global_batch["mask"])))
    for name, v in per_image.items():
      values.setdefault(name, []).append(np.asarray(v)[mask])
  return {name: np.concatenate(v) for name, v in values.items()}


def evaluate_batches(
  predict_fn: Callable[[jax.Array], jax.Array],
  batches: Iterable[dict[str, np.ndarray]],
  mesh: jax.sharding.Mesh,
) -> dict[str, float]:
  """Mean of each metric over the examples (see `per_image_values`)."""
  return {k: float(np.mean(v)) for k, v in per_image_values(predict_fn, batches, mesh).items()}


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
