"""Test set-up: 4 virtual CPU devices, so data-parallel code runs really sharded."""

import os
import subprocess
import sys
import tempfile

# Must happen before jax initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Many tests (and their subprocesses, which inherit this) compile the same tiny networks:
# jax's persistent compilation cache compiles each program once per machine.
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "pix2pix_jax_test_xla_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

from pix2pix_jax import cli, config_lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The one tiny test model: unet with 5 downs, widths 4, 32x32 crops of 36x36 images, batch 4.
TINY_MODEL = {
  "model.num_downs": 5,
  "model.ngf": 4,
  "model.ndf": 4,
  "data.load_size": 36,
  "data.crop_size": 32,
  "batch_size": 4,
}


def tiny_config(**overrides):
  """The default config shrunk to seconds: the tiny model, one epoch, frequent logs."""
  config = config_lib.load(os.path.join(REPO, "configs", "default.py"))
  small = {
    **TINY_MODEL,
    "data.shuffle_buffer": 16,
    "data.max_eval_examples": 8,
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
  return config_lib.apply_overrides(config, small)


# The tiny model as a sweep's overrides (sweep and SLURM tests), and a sweep file holding them.
TINY_SWEEP_OVERRIDES = {
  **TINY_MODEL,
  "data.source": "samples",
  "data.max_eval_examples": 4,
  "num_train_steps": 2,
  "log_every_steps": 1,
  "eval_every_steps": 1,
  "checkpoint_every_steps": 2,
  "sample_every_steps": 2,
  "num_sample_images": 2,
}


def exit_status(main, argv) -> int:
  """`main(argv)` run as its console script runs it (`cli.run`: a UserError is one line on
  stderr, status 1); returns the exit status."""
  with pytest.raises(SystemExit) as exit_info:
    cli.run(main, [str(a) for a in argv])
  return exit_info.value.code


def write_sweep(path, grid, overrides=TINY_SWEEP_OVERRIDES, **extra) -> str:
  """A sweep file named "tiny" at `path` over configs/default.py; returns its path."""
  config = os.path.join(REPO, "configs", "default.py")
  body = {"name": "tiny", "base_config": config, "overrides": overrides, "grid": grid, **extra}
  path.write_text(f"def get_sweep():\n  return {body!r}\n")
  return str(path)


@pytest.fixture
def make_tiny_config():
  return tiny_config


# The tiny model as pix2pix-train's flags, evaluating and sampling only when asked.
TINY_FLAGS = tuple(
  f"--config.{field}={value}"
  for field, value in {
    **TINY_MODEL,
    "data.max_eval_examples": 4,
    "num_sample_images": 2,
    "log_every_steps": 1,
    "eval_every_steps": 1000,
    "sample_every_steps": 1000,
    "num_epochs": 100,
  }.items()
)


def main_command(workdir, folder, steps, *extra):
  """`python -m pix2pix_jax.train.main` on a tiny model and an image folder (subprocess tests)."""
  import sys

  return [
    sys.executable,
    "-m",
    "pix2pix_jax.train.main",
    f"--config={REPO}/configs/default.py",
    f"--workdir={workdir}",
    "--config.data.source=folder",
    f"--config.data.folder={folder}",
    f"--config.num_train_steps={steps}",
    *TINY_FLAGS,
    *extra,
  ]


def subprocess_env(local_devices=1, **extra):
  env = dict(os.environ)
  env.update(
    XLA_FLAGS=f"--xla_force_host_platform_device_count={local_devices}",
    JAX_PLATFORMS="cpu",
    PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]),
    **extra,
  )
  return env


def start_process(cmd, *, merge_stderr=False):
  """`cmd` started in the repository with the tests' environment, its output piped as text."""
  return subprocess.Popen(
    cmd,
    env=subprocess_env(),
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
    text=True,
  )


def start_colorize(workdir, src, out, *extra):
  """pix2pix-colorize on `src` into `out` with a batch of 4, quiet, in a new process."""
  cmd = [sys.executable, "-m", "pix2pix_jax.colorize.main", "--workdir", str(workdir), str(src)]
  return start_process([*cmd, "-o", str(out), "--batch-size", "4", "--quiet", *extra])


def tiny_generator_workdir(path, step=1, config=None):
  """A workdir holding only a random tiny generator (as `pix2pix-import-torch` writes one)."""
  import jax
  import jax.numpy as jnp

  from pix2pix_jax import checkpoint, models

  config = config or tiny_config()
  variables = models.make_generator(config).init(
    jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False
  )
  checkpoint.save_generator(str(path), config, variables, step=step)
  return str(path)


def write_photo_folder(root, n=16, size=(40, 40)):
  """`n` random RGB PNGs in `root` (created)."""
  import numpy as np
  from PIL import Image

  rng = np.random.default_rng(0)
  root.mkdir(parents=True, exist_ok=True)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / f"{i}.png")
  return root
