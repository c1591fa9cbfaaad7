"""The training step and loop: sharding, compilation, end-to-end runs, exact resume."""

import glob
import logging
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from helpers import subprocess_env, tiny_config
from PIL import Image

from pix2pix_jax import checkpoint, config_lib, input_pipeline, parallel
from pix2pix_jax.train import loop as train_loop
from pix2pix_jax.train import step as train_step


def _init(config, mesh):
  nets = train_step.make_networks(config, steps_per_epoch=10)
  init = jax.jit(
    lambda key: train_step.init_state(nets, key, config.data.crop_size),
    out_shardings=parallel.replicated(mesh),
  )
  return nets, init(jax.random.key(0))


def _random_batch(config, seed=0):
  rng = np.random.default_rng(seed)
  size = config.data.crop_size
  return {"image": rng.integers(0, 256, (config.batch_size, size, size, 3), dtype=np.uint8)}


@pytest.mark.parametrize("color_space", ["rgb", "lab"])
def test_step_on_one_and_four_devices_agree(color_space):
  """BatchNorm statistics, losses and gradients are over the global batch, whatever the
  device count. Plain SGD makes parameter differences proportional to gradient differences
  (Adam's normalisation would amplify float noise in near-zero gradients up to the step size)."""
  assert jax.device_count() == 4
  # 6 levels at 64 px, so the generator's dropout (levels 4..num_downs-2) is exercised too.
  config = tiny_config(
    color_space=color_space, **{"model.num_downs": 6, "data.crop_size": 64, "data.load_size": 64}
  )
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = parallel.make_mesh(devices)
    nets, state = _init(config, mesh)
    nets = nets.replace(g_tx=optax.sgd(0.1), d_tx=optax.sgd(0.1))
    state = state.replace(
      g_opt_state=nets.g_tx.init(state.g_params), d_opt_state=nets.d_tx.init(state.d_params)
    )
    step = train_step.compile_step(nets, mesh)
    for i in range(2):
      batch = parallel.to_global(_random_batch(config, i), mesh)
      state, metrics = step(state, batch, jax.random.key(1))
    assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state))
    results.append((jax.device_get(state), jax.device_get(metrics)))
  (s1, m1), (s4, m4) = results
  for name in m1:
    np.testing.assert_allclose(m1[name], m4[name], rtol=1e-4, atol=1e-6, err_msg=name)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
    (s1.g_params, s1.d_params, s1.g_batch_stats, s1.d_batch_stats),
    (s4.g_params, s4.d_params, s4.g_batch_stats, s4.d_batch_stats),
  )
  assert int(s1.step) == int(s4.step) == 2


def test_step_changes_both_networks_and_reports_metrics():
  config = tiny_config()
  mesh = parallel.make_mesh()
  nets, state = _init(config, mesh)
  before = jax.device_get(state)
  state, metrics = train_step.compile_step(nets, mesh)(
    state, parallel.to_global(_random_batch(config), mesh), jax.random.key(0)
  )
  after = jax.device_get(state)
  for name in ("g_params", "d_params", "g_batch_stats", "d_batch_stats"):
    changed = jax.tree.map(
      lambda a, b: not np.array_equal(a, b), getattr(before, name), getattr(after, name)
    )
    assert all(jax.tree.leaves(changed)), name
  metrics = jax.device_get(metrics)
  expected = {
    "d_loss",
    "g_loss",
    "g_gan",
    "g_l1",
    "d_real_logits",
    "d_fake_logits",
    "g_grad_norm",
    "d_grad_norm",
    "learning_rate",
  }
  assert expected <= set(metrics)
  assert all(np.isfinite(v) for v in metrics.values())
  np.testing.assert_allclose(
    metrics["g_loss"], metrics["g_gan"] + config.loss.l1_weight * metrics["g_l1"], rtol=1e-5
  )
  assert metrics["learning_rate"] == pytest.approx(config.optim.learning_rate)


def test_step_compiles_once():
  config = tiny_config()
  mesh = parallel.make_mesh()
  nets, state = _init(config, mesh)
  step = train_step.compile_step(nets, mesh)
  for i in range(3):
    state, _ = step(state, parallel.to_global(_random_batch(config, i), mesh), jax.random.key(0))
  assert step._cache_size() == 1


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
  config = tiny_config(num_epochs=3, num_epochs_decay=2)
  lr = train_step.learning_rate_schedule(config, steps_per_epoch=10)
  base = config.optim.learning_rate
  assert float(lr(0)) == pytest.approx(base)
  assert float(lr(30)) == pytest.approx(base)
  assert float(lr(40)) == pytest.approx(base / 2)
  assert float(lr(50)) == pytest.approx(0.0)
  assert train_step.num_train_steps(config, 10) == 50


@pytest.mark.parametrize(
  "overrides, field",
  [
    ({"data.crop_size": 48}, "data.crop_size"),
    ({"color_space": "hsv"}, "color_space"),
    ({"loss.gan": "wgan"}, "loss.gan"),
    ({"data.load_size": 16}, "data.load_size"),
    ({"batch_size": 0}, "batch_size"),
    ({"data.source": "folder"}, "data.folder"),
  ],
)
def test_bad_config_fails_before_compute_naming_the_field(overrides, field, tmp_path):
  config = tiny_config(**overrides)
  with pytest.raises(config_lib.ConfigError, match=f"config.{field}"):
    train_loop.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def _mock_places_config(**overrides):
  # tfds's mock briefly patches file-system calls process-wide whenever a dataset is opened
  # (the eval pass does that); an asynchronous checkpoint write in flight at that moment would
  # be redirected. Checkpointing only at the last step (after the eval) keeps them apart.
  return tiny_config(
    **{
      "data.source": "tfds",
      "data.name": "places365_small",
      "checkpoint_every_steps": 1000,
      **overrides,
    }
  )


def test_train_and_evaluate_on_mock_places365(tmp_path):
  workdir = str(tmp_path / "run")
  config = _mock_places_config(num_train_steps=4)
  with tfds.testing.mock_data(num_examples=16):
    state = train_loop.train_and_evaluate(config, workdir)
  assert int(state.step) == 4
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "4"))
  assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
  grids = sorted(glob.glob(os.path.join(workdir, "samples", "*.png")))
  assert [os.path.basename(g) for g in grids] == ["step_0000004.png"]
  grid = np.asarray(Image.open(grids[0]))
  # 3 rows (gray, generated, real) x num_sample_images columns, 2-pixel white padding.
  assert grid.shape == (3 * 34 + 2, 2 * 34 + 2, 3)
  gray_row = grid[2:34, 2:34].astype(int)
  assert np.abs(gray_row[..., 0] - gray_row[..., 1]).max() <= 1  # the input row is gray


def _write_folder(root, n=12, size=(40, 48)):
  rng = np.random.default_rng(0)
  for i in range(n):
    sub = root / ("a" if i % 2 else "b")
    sub.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(sub / f"{i}.png")
  (root / "broken.jpg").write_bytes(b"not an image")


def test_train_and_evaluate_on_image_folder(tmp_path, caplog):
  folder = tmp_path / "photos"
  _write_folder(folder)
  config = tiny_config(
    **{
      "data.source": "folder",
      "data.folder": str(folder),
      "data.eval_fraction": 0.25,
      "num_train_steps": 5,
      "num_epochs_decay": 0,  # the schedule ends after one epoch (at most 3 steps here)
    }
  )
  with caplog.at_level(logging.WARNING):
    state = train_loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert int(state.step) == 5
  assert "num_train_steps=5 goes past the learning-rate schedule, which reaches 0" in caplog.text


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
  """2 steps, stop, 2 more steps == 4 steps straight, bitwise (same devices, same order)."""

  def run(steps, workdir):
    # The schedule is the same in all runs (epochs fixed); only where training stops differs.
    config = _mock_places_config(num_train_steps=steps, num_epochs=2)
    return train_loop.train_and_evaluate(config, str(tmp_path / workdir))

  with tfds.testing.mock_data(num_examples=16):
    straight = run(4, "a")
    run(2, "b")
    resumed = run(4, "b")
  assert int(resumed.step) == 4
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight), jax.device_get(resumed))


@pytest.mark.integration
def test_generator_only_restore_matches_training_state(tmp_path):
  workdir = str(tmp_path / "run")
  with tfds.testing.mock_data(num_examples=16):
    state = train_loop.train_and_evaluate(_mock_places_config(num_train_steps=2), workdir)
  config, variables = checkpoint.restore_generator(workdir)
  assert config.model.ngf == 4
  jax.tree.map(
    np.testing.assert_array_equal,
    jax.device_get(state.generator_variables),
    jax.device_get(variables),
  )
  # Saved by 4 devices, restored by a process with 1.
  script = (
    "import numpy as np, jax; from pix2pix_jax import checkpoint; "
    f"v = checkpoint.restore_generator({workdir!r})[1]; "
    "print(jax.device_count(), sum(np.asarray(x).sum() for x in jax.tree.leaves(v)))"
  )
  out = subprocess.run(
    [sys.executable, "-c", script], env=subprocess_env(1), capture_output=True, text=True
  )
  assert out.returncode == 0, out.stderr
  count, total = out.stdout.split()
  expected = sum(np.asarray(x).sum() for x in jax.tree.leaves(jax.device_get(variables)))
  assert count == "1" and float(total) == pytest.approx(float(expected), rel=1e-6)


def test_incompatible_resume_fails_before_touching_checkpoints(tmp_path):
  workdir = str(tmp_path / "run")
  with tfds.testing.mock_data(num_examples=16):
    train_loop.train_and_evaluate(_mock_places_config(num_train_steps=2), workdir)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="model.ngf"):
      train_loop.train_and_evaluate(
        _mock_places_config(num_train_steps=4, **{"model.ngf": 8}), workdir
      )
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def test_steps_per_epoch_matches_pipeline():
  with tfds.testing.mock_data(num_examples=16):
    assert input_pipeline.steps_per_epoch(_mock_places_config()) == 4
