"""The exported generator as a TensorFlow SavedModel (jax2tf native serialisation, weights as
variables), for TF serving stacks: `serving_default` maps `x` to `ab` as the .p2p program does
(docs/video.md, "The .p2p format"). TensorFlow is imported here and in input_pipeline.py only.
"""

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import jax

from pix2pix_jax import files

METADATA_FILE = os.path.join("assets.extra", "pix2pix_jax.json")


def save(
  path: str,
  predict: Callable[..., Any],
  variables: dict[str, Any],
  metadata: dict[str, Any],
  *,
  overwrite: bool = False,
) -> None:
  """Writes the SavedModel folder through a temporary folder beside `path` (renamed when
  complete); `predict(variables, x) -> ab` is converted with jax2tf."""
  import tensorflow as tf
  from jax.experimental import jax2tf

  files.check_overwrite(path, overwrite=overwrite)
  n, r = metadata["batch_per_device"], metadata["render_size"]
  c = int(metadata.get("input_channels", 1))
  converted = jax2tf.convert(
    predict, with_gradient=False, native_serialization_platforms=tuple(metadata["platforms"])
  )
  module = tf.Module()
  module.weights = tf.nest.map_structure(tf.Variable, jax.device_get(variables))

  @tf.function(input_signature=[tf.TensorSpec((n, r, r, c), tf.float32, name="x")], autograph=False)
  def serve(x):
    return {"ab": converted(module.weights, x)}

  module.serve = serve
  tmp = files.temp_name(path, "partial")
  try:
    tf.saved_model.save(module, tmp, signatures={"serving_default": serve})
    os.makedirs(os.path.join(tmp, os.path.dirname(METADATA_FILE)), exist_ok=True)
    with open(os.path.join(tmp, METADATA_FILE), "w") as f:
      json.dump(metadata, f, indent=1, sort_keys=True)
    if os.path.exists(path):
      shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.replace(tmp, path)
  except OSError as e:
    raise files.MediaError(f"{path}: cannot write output ({files.describe_os_error(e)})") from e
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
