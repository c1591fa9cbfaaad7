"""What the tests share: the one tiny model (as a config, a sweep's overrides and pix2pix-train's
flags), sweep files, tiny workdirs and photo folders, and running commands as their console
scripts or processes run them.

Test files (and the scripts beside them) `from helpers import ...`; conftest.py sets up the
environment before jax initialises, and holds the fixtures.
"""

import os
import subprocess
import sys

import pytest

from pix2pix_jax import cli, config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "default.py")

# The one tiny test model: unet with 5 downs, widths 4, 32x32 crops of 36x36 images, batch 4.
_TINY_MODEL = {
  "model.num_downs": 5,
  "model.ngf": 4,
  "model.ndf": 4,
  "data.load_size": 36,
  "data.crop_size": 32,
  "batch_size": 4,
}

# How each kind of test runs the tiny model: the fields it sets on top of _TINY_MODEL.
_TINY_RUNS = {
  # tiny_config: training in the test process, one epoch, frequent logs.
  "config": {
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
  },
  # tiny_overrides: a sweep's runs (sweep and SLURM tests), 2 steps on the embedded samples.
  "sweep": {
    "data.source": "samples",
    "data.max_eval_examples": 4,
    "num_train_steps": 2,
    "log_every_steps": 1,
    "eval_every_steps": 1,
    "checkpoint_every_steps": 2,
    "sample_every_steps": 2,
    "num_sample_images": 2,
  },
  # tiny_flags: pix2pix-train in a process, evaluating and sampling only when asked.
  "flags": {
    "data.max_eval_examples": 4,
    "num_sample_images": 2,
    "log_every_steps": 1,
    "eval_every_steps": 1000,
    "sample_every_steps": 1000,
    "num_epochs": 100,
  },
}


def _tiny(run: str, extra: dict) -> dict:
  return {**_TINY_MODEL, **_TINY_RUNS[run], **extra}


def tiny_config(**extra):
  """The default config shrunk to seconds: the tiny model, one epoch, frequent logs; `extra`
  (dotted field names: `tiny_config(**{"model.hints": True})`) on top."""
  return config_lib.apply_overrides(config_lib.load(DEFAULT_CONFIG), _tiny("config", extra))


def tiny_overrides(**extra) -> dict:
  """The tiny model as a sweep's overrides (2 steps on the embedded samples), `extra` on top."""
  return _tiny("sweep", extra)


def tiny_flags(**extra) -> tuple[str, ...]:
  """The tiny model as pix2pix-train's `--config.field=value` flags, evaluating and sampling only
  when asked, `extra` on top."""
  return tuple(f"--config.{field}={value}" for field, value in _tiny("flags", extra).items())


def write_sweep(path, grid, overrides=None, **extra) -> str:
  """A sweep file named "tiny" at `path` over configs/default.py, with `overrides` (by default
  tiny_overrides()); returns its path."""
  overrides = tiny_overrides() if overrides is None else overrides
  body = {"name": "tiny", "base_config": DEFAULT_CONFIG, "overrides": overrides, "grid": grid}
  body.update(extra)
  path.write_text(f"def get_sweep():\n  return {body!r}\n")
  return str(path)


def exit_status(main, argv) -> int:
  """`main(argv)` run as its console script runs it (`cli.run`: a UserError is one line on
  stderr, status 1); returns the exit status."""
  with pytest.raises(SystemExit) as exit_info:
    cli.run(main, [str(a) for a in argv])
  return exit_info.value.code


def main_command(workdir, folder, steps, *extra):
  """`python -m pix2pix_jax.train.main` on a tiny model and an image folder (subprocess tests)."""
  return [
    sys.executable,
    "-m",
    "pix2pix_jax.train.main",
    f"--config={DEFAULT_CONFIG}",
    f"--workdir={workdir}",
    "--config.data.source=folder",
    f"--config.data.folder={folder}",
    f"--config.num_train_steps={steps}",
    *tiny_flags(),
    *extra,
  ]


def subprocess_env(local_devices=1, **extra):
  """The tests' environment for a new process: `local_devices` CPU devices, the repository and
  tests/ importable, `extra` variables on top."""
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
