"""pix2pix-train: ``pix2pix-train --config configs/x.py --workdir W [--config.f=v]``.

Re-running the same command in the same workdir resumes where it stopped.
"""

import os
import re

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from pix2pix_jax import cli, config_lib, distributed, errors, parallel
from pix2pix_jax.train import workdir_lock

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.mark_flags_as_required(["config", "workdir"])
distributed.define_flags()


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with a bad flag, config file or `--config.f=v` override as one UserError."""
  path = _config_path(argv)
  if path is not None and not os.path.isfile(path.split(":", 1)[0]):
    raise config_lib.ConfigError(f"{path}: config file not found")
  try:
    return FLAGS(argv)
  except flags.Error as e:
    raise errors.UserError(str(e)) from None
  except (KeyError, AttributeError) as e:  # ml_collections: an override of an unknown field
    if path is not None:
      config = config_lib.load(path)
      for arg in argv:
        if arg.startswith(("--config.", "-config.")):
          config_lib.check_field(config, arg.split("=", 1)[0].split(".", 1)[1])
    raise errors.UserError(f"--config overrides: {e}") from None


def _config_path(argv: list[str]) -> str | None:
  """The value of --config in `argv` (--config=P or --config P), else None."""
  for i, arg in enumerate(argv):
    if match := re.match(r"^--?config(?:=(.+)|$)", arg):
      return match.group(1) or (argv[i + 1] if i + 1 < len(argv) else None)
  return None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.configure()
  if FLAGS["verbosity"].present:  # -v N / --verbosity=N: absl's (and orbax's) log lines too
    absl_logging.set_verbosity(FLAGS.verbosity)
  distributed.initialize_from_flags()
  # A bad config fails before the workdir is made; a second run on a workdir is refused before
  # TensorFlow and the model load.
  config_lib.validate(FLAGS.config)
  parallel.local_batch_size(FLAGS.config.batch_size)
  with workdir_lock.hold(FLAGS.workdir):
    # Imported after jax.distributed is initialised.
    from pix2pix_jax import input_pipeline
    from pix2pix_jax.train import loop as train_loop

    input_pipeline.hide_accelerators_from_tf()
    train_loop.train_and_evaluate(FLAGS.config, FLAGS.workdir, workdir_held=True)


def run():
  """Console entry point (pix2pix-train): `cli.run` turns a UserError into one line, status 1."""
  cli.run(lambda argv: app.run(main, argv, flags_parser=parse_flags))


if __name__ == "__main__":
  run()
