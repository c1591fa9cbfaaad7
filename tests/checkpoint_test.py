"""Generator-only checkpoints, workdirs saved by earlier versions, and corrupted checkpoints:
detected, moved aside, the newest good one restored."""

import logging
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from helpers import REPO, subprocess_env, tiny_config, write_photo_folder
from PIL import Image

from pix2pix_jax import checkpoint, checkpoint_integrity, models
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.train import loop as train_loop


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
  got = colorizer_lib.Colorizer.from_config(restored_config, restored, batch_size=4)(frames)
  want = colorizer_lib.Colorizer.from_config(config, variables, batch_size=4)(frames)
  np.testing.assert_allclose(got, want, atol=1)  # plain vs auto: the same function


def test_missing_workdir_or_checkpoint_is_a_user_error(tmp_path):
  with pytest.raises(checkpoint.NoCheckpointError, match="no checkpoints/ directory"):
    checkpoint.restore_generator(str(tmp_path / "nothing"))
  (tmp_path / "w" / "checkpoints").mkdir(parents=True)
  with pytest.raises(checkpoint.NoCheckpointError, match="no complete checkpoint"):
    checkpoint.restore_generator(str(tmp_path / "w"))


# Corrupted checkpoints: a truncated or bit-flipped array file, missing metadata.


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
  """A workdir with sealed checkpoints at steps 2 and 4, and the generator of each."""
  workdir = tmp_path_factory.mktemp("two") / "run"
  photos = write_photo_folder(tmp_path_factory.mktemp("photos") / "p", n=8)
  config = _train_config(photos, num_train_steps=4)
  train_loop.train_and_evaluate(config, str(workdir))
  generators = {s: checkpoint.restore_generator(str(workdir), step=s)[1] for s in (2, 4)}
  return {"workdir": workdir, "photos": photos, "generators": generators}


def _train_config(photos, **overrides):
  return tiny_config(
    **{
      "data.source": "folder",
      "data.folder": str(photos),
      "data.eval_fraction": 0.0,
      "num_sample_images": 0,
      "checkpoint_every_steps": 2,
      "keep_checkpoint_every_steps": 2,
      **overrides,
    }
  )


def _largest_array_file(step_dir):
  files = [p for p in step_dir.rglob("*") if p.is_file() and "/d/" in str(p)]
  return max(files, key=lambda p: p.stat().st_size)


def corrupt(step_dir, how):
  """Damages a finished checkpoint the way a bad disk, a copy or a user would."""
  if how == "truncated":
    path = _largest_array_file(step_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  elif how == "bit_flip":
    path = _largest_array_file(step_dir)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))
  elif how == "missing_metadata":
    (step_dir / "state" / "_METADATA").unlink()
  elif how == "missing_manifest":  # what made orbax print "Event loop is closed"
    (step_dir / "state" / "manifest.ocdbt").unlink()
  else:
    raise ValueError(how)


def _copy(two_checkpoints, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(two_checkpoints["workdir"], workdir)
  return workdir


def _snapshot(folder):
  return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_every_finished_step_is_sealed_and_passes(two_checkpoints):
  for step in (2, 4):
    step_dir = os.path.join(two_checkpoints["workdir"], "checkpoints", str(step))
    assert checkpoint_integrity.verify_content_hash(step_dir) is True
  # The format sha256sum reads: an independent check of every digest.
  check = subprocess.run(
    ["sha256sum", "--check", "--strict", checkpoint_integrity.CONTENT_HASH_FILE],
    cwd=step_dir,
    capture_output=True,
    text=True,
  )
  assert check.returncode == 0, check.stdout + check.stderr
  listed = {line.rsplit(": ", 1)[0] for line in check.stdout.splitlines()}
  assert {"state/manifest.ocdbt", "config/metadata", "state/_METADATA"} <= listed
  on_disk = {
    os.path.relpath(os.path.join(root, name), step_dir)
    for root, _, names in os.walk(step_dir)
    for name in names
  }
  assert listed == on_disk - {checkpoint_integrity.CONTENT_HASH_FILE}


@pytest.mark.parametrize("how", ["truncated", "bit_flip", "missing_metadata"])
def test_training_moves_a_corrupt_checkpoint_aside_and_resumes_from_the_previous(
  two_checkpoints, tmp_path, caplog, how
):
  workdir = _copy(two_checkpoints, tmp_path)
  bad = workdir / "checkpoints" / "4"
  corrupt(bad, how)
  damaged = _snapshot(bad)
  config = _train_config(two_checkpoints["photos"], num_train_steps=5)
  with caplog.at_level(logging.INFO):
    state = train_loop.train_and_evaluate(config, str(workdir))
  assert int(state.step) == 5
  warnings = [r.getMessage() for r in caplog.records if "corrupt checkpoint" in r.getMessage()]
  assert len(warnings) == 1 and str(bad) in warnings[0], caplog.text
  assert "resumed from step 2" in caplog.text
  # Moved aside whole, never deleted; orbax no longer lists it.
  (moved,) = (workdir / "checkpoints" / checkpoint_integrity.CORRUPT_DIR).iterdir()
  assert moved.name.startswith("4-") and _snapshot(moved) == damaged
  assert checkpoint.latest_step(str(workdir)) == 5


def test_an_unsealed_checkpoint_that_orbax_cannot_read_is_moved_aside(
  two_checkpoints, tmp_path, caplog
):
  """Without the content hash (a step saved before sealing existed, or killed before it was
  sealed) the failure comes from orbax itself; resuming must survive it too."""
  workdir = _copy(two_checkpoints, tmp_path)
  bad = workdir / "checkpoints" / "4"
  (bad / checkpoint_integrity.CONTENT_HASH_FILE).unlink()
  corrupt(bad, "truncated")
  config = _train_config(two_checkpoints["photos"], num_train_steps=5)
  with caplog.at_level(logging.INFO):
    train_loop.train_and_evaluate(config, str(workdir))
  assert "cannot be read back" in caplog.text and "resumed from step 2" in caplog.text
  assert [p.name[:2] for p in (workdir / "checkpoints" / "corrupt").iterdir()] == ["4-"]


def test_when_no_checkpoint_restores_nothing_is_moved_and_the_error_names_them(
  two_checkpoints, tmp_path
):
  workdir = _copy(two_checkpoints, tmp_path)
  for step in ("2", "4"):
    corrupt(workdir / "checkpoints" / step, "truncated")
  before = _snapshot(workdir / "checkpoints")
  config = _train_config(two_checkpoints["photos"], num_train_steps=5)
  with pytest.raises(
    checkpoint_integrity.CorruptCheckpointError, match="step 4: .*; step 2: .*nothing was"
  ):
    train_loop.train_and_evaluate(config, str(workdir))
  assert _snapshot(workdir / "checkpoints") == before


def test_generator_restore_skips_a_corrupt_newest_without_moving_it(
  two_checkpoints, tmp_path, caplog
):
  workdir = _copy(two_checkpoints, tmp_path)
  corrupt(workdir / "checkpoints" / "4", "bit_flip")
  with caplog.at_level(logging.WARNING):
    _, variables = checkpoint.restore_generator(str(workdir))
  jax.tree.map(np.testing.assert_array_equal, variables, two_checkpoints["generators"][2])
  assert f"corrupt checkpoint {workdir / 'checkpoints' / '4'}" in caplog.text
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]  # readers move nothing
  with pytest.raises(
    checkpoint_integrity.CorruptCheckpointError, match=r"checkpoints/4: state/.* differs"
  ):
    checkpoint.restore_generator(str(workdir), step=4)


@pytest.mark.integration
def test_colorize_with_only_a_corrupt_checkpoint_fails_in_one_line(two_checkpoints, tmp_path):
  workdir = _copy(two_checkpoints, tmp_path)
  shutil.rmtree(workdir / "checkpoints" / "2")
  (workdir / "checkpoints" / "4" / checkpoint_integrity.CONTENT_HASH_FILE).unlink()
  corrupt(workdir / "checkpoints" / "4", "missing_manifest")
  photo = tmp_path / "in.png"
  Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(photo)
  result = subprocess.run(
    [sys.executable, "-m", "pix2pix_jax.colorize.main", "--workdir", str(workdir), str(photo)]
    + ["--output", str(tmp_path / "out.png")],
    env=subprocess_env(),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "checkpoints: no checkpoint can be restored (step 4:" in errors[0]
  assert "Traceback" not in result.stderr and "Event loop is closed" not in result.stderr
  assert not (tmp_path / "out.png").exists()
