"""The evaluator of the training loop and `pix2pix-evaluate`: a predict function and padded eval
batches in, per-image metrics of the real examples (and their means) out."""

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import parallel
from pix2pix_jax.evaluate import common

# predict_fn(variables, images, first_index): the global uint8 batch [B, H, W, 3] and the position
# of its first image in the stream (padding counted) -> sRGB in [0, 1], or {name: such}.
PredictFn = Callable[[Any, jax.Array, jax.Array], Any]


@dataclasses.dataclass(frozen=True)
class BatchResult:
  """One evaluated batch."""

  predictions: Any  # predict_fn's output, on device
  images: jax.Array  # the global uint8 batch
  mask: np.ndarray  # [B] on the host: which examples are real (not padding)
  values: dict[str, Any]  # metrics of the real examples: {metric: [n]} or {name: {metric: [n]}}


class Evaluator:
  """Per-image metrics (`common.image_metrics`) of `predict_fn`'s colourisations over padded eval
  batches; the metrics are gathered on every process. Stateless between calls."""

  def __init__(self, predict_fn: PredictFn, mesh: jax.sharding.Mesh):
    self.predict_fn = predict_fn
    self.mesh = mesh
    replicated = parallel.replicated(mesh)
    self._metrics = jax.jit(_metrics_of, out_shardings=replicated)
    self._gather = jax.jit(lambda x: x, out_shardings=replicated)

  def batches(
    self, variables: Any, batches: Iterable[dict[str, np.ndarray]]
  ) -> Iterator[BatchResult]:
    """Evaluates each process-local batch {"image", "mask"} in turn."""
    first_index = 0
    for batch in batches:
      global_batch = parallel.to_global(batch, self.mesh)
      images = global_batch["image"]
      predictions = self.predict_fn(variables, images, jnp.int32(first_index))
      first_index += images.shape[0]
      per_image = jax.device_get(self._metrics(predictions, images))
      mask = np.asarray(jax.device_get(self._gather(global_batch["mask"])))
      yield BatchResult(predictions, images, mask, _real(per_image, mask))

  def per_image(self, variables: Any, batches: Iterable[dict[str, np.ndarray]]) -> dict[str, Any]:
    """{metric: [N]} (or {name: {metric: [N]}}) over every real example of `batches`."""
    return concatenate([result.values for result in self.batches(variables, batches)])

  def evaluate(self, variables: Any, batches: Iterable[dict[str, np.ndarray]]) -> dict[str, float]:
    """The mean of each metric over the real examples (a predict_fn of one prediction)."""
    return {k: float(np.mean(v)) for k, v in self.per_image(variables, batches).items()}


def _metrics_of(predictions: Any, images: jax.Array) -> dict[str, Any]:
  if isinstance(predictions, dict):
    return {name: common.image_metrics(p, images) for name, p in predictions.items()}
  return common.image_metrics(predictions, images)


def _real(per_image: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
  """The values of the real examples only."""
  return {
    name: _real(v, mask) if isinstance(v, dict) else np.asarray(v)[mask]
    for name, v in per_image.items()
  }


def concatenate(per_batch: list[dict[str, Any]]) -> dict[str, Any]:
  """Batches' `BatchResult.values` -> one array per metric (and name), in batch order."""
  if not per_batch:
    return {}
  return {
    name: concatenate([b[name] for b in per_batch])
    if isinstance(v, dict)
    else np.concatenate([b[name] for b in per_batch])
    for name, v in per_batch[0].items()
  }
