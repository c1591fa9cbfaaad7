"""Short real training runs on the embedded photos, for the learning and mixed-precision tests:
the input pipeline, the jit'd train step over the 4 test devices and the evaluation code, as
training uses them."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
from helpers import tiny_config

from pix2pix_jax import images, input_pipeline, parallel
from pix2pix_jax.evaluate import common
from pix2pix_jax.train import step as train_step


def photo_folder(root, count: int = 4) -> str:
  """The first `count` embedded training photos, as both splits of a folder data source."""
  train_dir = os.path.join(images.SAMPLES_DIR, "train")
  names = sorted(os.listdir(train_dir))[:count]
  for split in ("train", "eval"):
    os.makedirs(os.path.join(root, split), exist_ok=True)
    for name in names:
      shutil.copy(os.path.join(train_dir, name), os.path.join(root, split, name))
  return str(root)


def overfit_config(folder: str, size: int = 32, **overrides):
  """A small U-Net (num_downs 5, widths 16) on `folder`'s photos resized to `size`, no crop or
  flip, so that every step sees the same 4 images."""
  fields = {
    "data.source": "folder",
    "data.folder": folder,
    "data.load_size": size,
    "data.crop_size": size,
    "data.flip": False,
    "model.num_downs": 5,
    "model.ngf": 16,
    "model.ndf": 16,
    "num_epochs": 10_000,
  }
  fields.update(overrides)
  return tiny_config(**fields)


def train(config, steps: int, seed: int = 0):
  """(networks, final state, per-step metrics as numpy arrays) of `steps` updates."""
  mesh = parallel.make_mesh()
  nets = train_step.make_networks(config, steps_per_epoch=1)
  init = jax.jit(
    lambda key: train_step.init_state(nets, key, config.data.crop_size),
    out_shardings=parallel.replicated(mesh),
  )
  state = init(jax.random.key(seed))
  step = train_step.compile_step(nets, mesh)
  batches = input_pipeline.create_train_iterator(config)
  key = jax.random.key(seed + 1)
  history = []
  for _ in range(steps):
    state, metrics = step(state, parallel.to_global(next(batches), mesh), key)
    # Waiting for each step: dozens of queued steps' all-reduces can starve XLA:CPU's threads
    # on 2 cores until its collectives time out.
    history.append(jax.device_get(metrics))
  history = {k: np.array([m[k] for m in history]) for k in history[0]}
  return nets, state, history


def eval_metrics(config, nets, g_variables) -> dict[str, np.ndarray]:
  """Per-image metrics of the generator's colourisation of the eval photos and of the gray
  baseline's: {"model": {...}, "gray": {...}}, plus the model's sRGB predictions."""
  mesh = parallel.make_mesh()
  (batch,) = list(input_pipeline.create_eval_iterator(config))
  assert batch["mask"].all()
  real = parallel.to_global(batch, mesh)["image"]

  @jax.jit
  def compute(variables, real):
    predicted = common.predict_rgb(nets.generator, nets.color_space, variables, real)
    gray = common.baselines(real, jnp.zeros(2))["gray"]
    return predicted, {
      "model": common.image_metrics(predicted, real),
      "gray": common.image_metrics(gray, real),
    }

  predicted, values = jax.device_get(compute(g_variables, real))
  return {**values, "predicted": np.asarray(predicted)}
