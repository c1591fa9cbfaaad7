"""Evaluation: colourisation metrics of a model over a stream of batches."""

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import color, metrics, parallel


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
