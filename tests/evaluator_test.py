"""The evaluator: metrics of known predict functions against NumPy, over unevenly padded batches."""

import jax.numpy as jnp
import numpy as np
import pytest

from pix2pix_jax import color, parallel
from pix2pix_jax.evaluate import common, evaluator

NUM_IMAGES, BATCH, SIZE = 10, 4, 16  # batches of 4, 4 and 2 + 2 padding


def _images():
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (NUM_IMAGES, SIZE, SIZE, 3), dtype=np.uint8)


def _batches(images):
  """Padded batches {"image", "mask"} as the input pipeline gives them; white padding."""
  for start in range(0, len(images), BATCH):
    chunk = images[start : start + BATCH]
    pad = BATCH - len(chunk)
    yield {
      "image": np.concatenate([chunk, np.full((pad, SIZE, SIZE, 3), 255, np.uint8)]),
      "mask": np.arange(BATCH) < len(chunk),
    }


def _darker(variables, images, first_index):
  return color.uint8_to_float(images) * variables["scale"]


def _psnr(predicted, images):
  """PSNR per image in NumPy (float64)."""
  mse = np.mean((np.asarray(predicted, np.float64) - images / 255.0) ** 2, axis=(1, 2, 3))
  return 10 * np.log10(1.0 / mse)


def test_metrics_of_a_known_predict_fn_match_numpy_over_padded_batches():
  images = _images()
  evaluation = evaluator.Evaluator(_darker, parallel.make_mesh())
  values = evaluation.per_image({"scale": 0.8}, _batches(images))
  assert set(values) == {"psnr", "ssim", "ciede2000", "colorfulness", "colorfulness_diff"}
  assert all(v.shape == (NUM_IMAGES,) for v in values.values())  # padding dropped
  np.testing.assert_allclose(values["psnr"], _psnr(images / 255.0 * 0.8, images), rtol=1e-4)
  # Every metric equals one unbatched computation over the real images.
  expected = common.image_metrics(jnp.asarray(images / 255.0 * 0.8, jnp.float32), images)
  for name, v in values.items():
    np.testing.assert_allclose(v, np.asarray(expected[name]), rtol=1e-4, atol=1e-4)


def test_the_mean_counts_real_examples_only():
  images = _images()
  evaluation = evaluator.Evaluator(_darker, parallel.make_mesh())
  means = evaluation.evaluate({"scale": 0.5}, _batches(images))
  psnr = _psnr(images / 255.0 * 0.5, images)
  assert means["psnr"] == pytest.approx(np.mean(psnr), rel=1e-5)
  # The white padding would lower the mean PSNR by pulling in two much worse images.
  padded = np.concatenate([images, np.full((2, SIZE, SIZE, 3), 255, np.uint8)])
  assert abs(np.mean(_psnr(padded / 255.0 * 0.5, padded)) - means["psnr"]) > 0.1


def _indexed(variables, images, first_index):
  """Named predictions: image i (its position in the stream) as a flat gray of level i / 16."""
  index = first_index + jnp.arange(images.shape[0])
  gray = jnp.broadcast_to((index / 16.0)[:, None, None, None], images.shape).astype(jnp.float32)
  return {"by_index": gray, "identity": color.uint8_to_float(images)}


def test_named_predictions_and_the_index_of_each_image():
  images = _images()
  evaluation = evaluator.Evaluator(_indexed, parallel.make_mesh())
  results = list(evaluation.batches(None, _batches(images)))
  assert [r.mask.tolist() for r in results][-1] == [True, True, False, False]
  assert [len(r.values["by_index"]["psnr"]) for r in results] == [4, 4, 2]
  values = evaluator.concatenate([r.values for r in results])
  levels = np.broadcast_to((np.arange(NUM_IMAGES) / 16.0)[:, None, None, None], images.shape)
  np.testing.assert_allclose(values["by_index"]["psnr"], _psnr(levels, images), rtol=1e-4)
  assert (values["identity"]["psnr"] > 100).all()  # the ground truth itself
  np.testing.assert_allclose(values["identity"]["ciede2000"], 0, atol=1e-3)
