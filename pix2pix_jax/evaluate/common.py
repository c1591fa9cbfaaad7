"""Evaluation shared by training and `pix2pix-evaluate`: the generator's colourisation of uint8
batches, per-image metrics over padded eval batches, and the trivial gray and mean-chroma
baselines."""

from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import color, hints, metrics, parallel


def predict_rgb(
  generator: nn.Module,
  color_space: str,
  g_variables: dict[str, Any],
  images: jax.Array,
  hint_channels: jax.Array | None = None,
) -> jax.Array:
  """uint8 RGB batch -> the generator's colourisation of its luminance, sRGB in [0, 1].
  hint_channels: `hints.encode`'s [B,H,W,3] for a hint generator (default: no hints)."""
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


def per_image_values(
  predict_fn: Callable[[jax.Array], Any],
  batches: Iterable[dict[str, np.ndarray]],
  mesh: jax.sharding.Mesh,
  on_batch: Callable[[Any, jax.Array, np.ndarray], None] | None = None,
) -> dict[str, Any]:
  """Runs `predict_fn` (uint8 batch -> sRGB [0,1], or a dict of named such predictions) over
  padded eval batches; returns the per-image metrics of the real (unpadded) examples, gathered
  on every process: {metric: [N]}, or {name: {metric: [N]}} for a dict of predictions.

  on_batch(predictions, images, mask): called after each batch with the device predictions, the
  global uint8 batch and its host mask of real examples (galleries, progress)."""

  def metrics_of(predicted, images):
    if isinstance(predicted, dict):
      return {name: image_metrics(p, images) for name, p in predicted.items()}
    return image_metrics(predicted, images)

  compute = jax.jit(metrics_of, out_shardings=parallel.replicated(mesh))
  gather = jax.jit(lambda m: m, out_shardings=parallel.replicated(mesh))
  values: dict[str, Any] = {}
  for batch in batches:
    global_batch = parallel.to_global(batch, mesh)
    predicted = predict_fn(global_batch["image"])
    per_image = jax.device_get(compute(predicted, global_batch["image"]))
    mask = np.asarray(jax.device_get(gather(global_batch["mask"])))
    _append(values, per_image, mask)
    if on_batch is not None:
      on_batch(predicted, global_batch["image"], mask)
  return _concatenate(values)


def _append(values: dict[str, Any], per_image: dict[str, Any], mask: np.ndarray) -> None:
  for name, v in per_image.items():
    if isinstance(v, dict):
      _append(values.setdefault(name, {}), v, mask)
    else:
      values.setdefault(name, []).append(np.asarray(v)[mask])


def _concatenate(values: dict[str, Any]) -> dict[str, Any]:
  return {
    name: _concatenate(v) if isinstance(v, dict) else np.concatenate(v)
    for name, v in values.items()
  }


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
  """Colour hints sampled from the uint8 ground truth (`hints.sample_points`, one key per image):
  the hint generator's colourisation with them ("model_hints") and two propagations, sRGB in
  [0, 1], L kept: "nearest_hint" (each pixel takes the ab of its nearest hint) and
  "luminance_fill" (`hints.propagate` with the generator's luminance weight: the fill that the
  generator corrects)."""
  rgb = color.uint8_to_float(images)
  lab = color.rgb_to_lab(rgb)
  hint_ab, mask, nearest = hints.sample_points(keys, lab[..., 1:], num_points, patch)
  fill, _ = hints.propagate(hint_ab, mask, lab[..., 0], generator.hint_luminance_weight)
  model = predict_rgb(generator, color_space, g_variables, images, hints.encode(hint_ab, mask))
  lightness = color.luminance(rgb)
  return {
    "model_hints": model,
    "nearest_hint": color.combine(lightness, nearest),
    "luminance_fill": color.combine(lightness, fill),
  }
