"""Command line for training: ``python -m pix2pix_jax.main --config configs/x.py --workdir W``.

Re-running the same command in the same workdir resumes where it stopped.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from pix2pix_jax import distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.mark_flags_as_required(["config", "workdir"])
distributed.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  distributed.initialize_from_flags()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # Imported after jax.distributed is initialised.
  from pix2pix_jax import train

  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ValueError, OSError, FloatingPointError) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


def run():
  """Console entry point (pix2pix-train)."""
  app.run(main)


if __name__ == "__main__":
  run()
