"""Test set-up: 4 virtual CPU devices, so data-parallel code runs really sharded."""

import os

# Must happen before jax initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from pix2pix_jax import config_files  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  """The default config shrunk to seconds: unet with 5 downs, widths 4, 32x32 crops."""
  config = config_files.load(os.path.join(REPO, "configs", "default.py"))
  small = {
    "model.num_downs": 5,
    "model.ngf": 4,
    "model.ndf": 4,
    "data.load_size": 36,
    "data.crop_size": 32,
    "data.shuffle_buffer": 16,
    "data.max_eval_examples": 8,
    "batch_size": 4,
    "num_epochs": 1,
    "num_epochs_decay": 1,
    "log_every_steps": 2,
    "sample_every_steps": 4,
    "num_sample_images": 2,
    "eval_every_steps": 4,
    "checkpoint_every_steps": 2,
    "keep_checkpoint_every_steps": 100,
  }
  small.update(overrides)
  return config_files.apply_overrides(config, small)


@pytest.fixture
def make_tiny_config():
  return tiny_config
