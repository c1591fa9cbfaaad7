"""Generator-only checkpoints: save and restore, and workdirs saved by earlier versions."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import tiny_config

from pix2pix_jax import checkpoint, inference, models


def _generator_variables(config):
  return models.make_generator(config).init(
    jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False
  )


def test_save_and_restore_generator(tmp_path):
  config = tiny_config()
  variables = _generator_variables(config)
  checkpoint.save_generator(str(tmp_path), config, variables, step=3)
  assert checkpoint.latest_step(str(tmp_path)) == 3
  restored_config, restored = checkpoint.restore_generator(str(tmp_path))
  assert restored_config.to_dict() == config.to_dict()
  jax.tree.map(np.testing.assert_array_equal, restored, variables)
  with pytest.raises(checkpoint.CheckpointExistsError, match="already holds checkpoints"):
    checkpoint.save_generator(str(tmp_path), config, variables)


def test_a_workdir_saved_with_model_upsample_restores_and_colourises(tmp_path):
  """Workdirs written before `model.conv` existed name the form `model.upsample`."""
  config = tiny_config()
  variables = _generator_variables(config)
  old = config.to_dict()
  del old["model"]["conv"]
  old["model"]["upsample"] = "transpose"
  checkpoint.save_generator(str(tmp_path), ml_collections.ConfigDict(old), variables)
  restored_config, restored = checkpoint.restore_generator(str(tmp_path))
  assert restored_config.model.conv == "plain" and "upsample" not in restored_config.model
  frames = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  got = inference.Colorizer(restored_config, restored, batch_size=4)(frames)
  want = inference.Colorizer(config, variables, batch_size=4)(frames)
  np.testing.assert_allclose(got, want, atol=1)  # plain vs auto: the same function


def test_missing_workdir_or_checkpoint_is_a_user_error(tmp_path):
  with pytest.raises(checkpoint.NoCheckpointError, match="no checkpoints/ directory"):
    checkpoint.restore_generator(str(tmp_path / "nothing"))
  (tmp_path / "w" / "checkpoints").mkdir(parents=True)
  with pytest.raises(checkpoint.NoCheckpointError, match="no complete checkpoint"):
    checkpoint.restore_generator(str(tmp_path / "w"))
