"""pix2pix-train: ``pix2pix-train --config configs/x.py --workdir W [--config.f=v]``.

Re-running the same command in the same workdir resumes where it stopped.
"""

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from pix2pix_jax import cli, distributed, errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.mark_flags_as_required(["config", "workdir"])
distributed.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.configure()
  if FLAGS["verbosity"].present:  # -v N / --verbosity=N: absl's (and orbax's) log lines too
    absl_logging.set_verbosity(FLAGS.verbosity)
  distributed.initialize_from_flags()
  # Imported after jax.distributed is initialised.
  from pix2pix_jax import input_pipeline
  from pix2pix_jax.train import loop as train_loop

  input_pipeline.hide_accelerators_from_tf()
  try:
    train_loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except errors.UserError as e:
    absl_logging.flush()
    raise SystemExit(f"error: {e}") from None


def run():
  """Console entry point (pix2pix-train)."""
  app.run(main)


if __name__ == "__main__":
  run()
