"""What every command does first and last: `configure()` sets the process-wide defaults before
JAX starts (library modules change no global setting), and `report` / `run` print the project's
own errors (`errors.UserError`) as one line on stderr with exit status 1; other exceptions keep
their traceback.
"""

import argparse
import logging
import os
import sys
from collections.abc import Callable

from pix2pix_jax import errors, xla_flags

LOGGER_NAME = "pix2pix_jax"


def configure(*, verbose: bool = False) -> None:
  """XLA flag defaults, TF's C++ log level, and a quiet console.

  The package's own messages (progress lines, resumes, warnings) go to stderr through the
  "pix2pix_jax" loggers; absl's INFO lines (orbax's) show only with `verbose`.
  """
  xla_flags.apply_defaults()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
  logging.getLogger(LOGGER_NAME).setLevel(logging.INFO)
  if not logging.root.handlers:  # absl's app installs its own handler; argparse commands don't
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logging.root.addHandler(handler)


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--verbose", action="store_true", help="also show absl/orbax INFO lines")


def report(error: errors.UserError) -> int:
  """Prints a user error as one line on stderr; returns the exit status for it."""
  print(f"error: {error}", file=sys.stderr, flush=True)
  return 1


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
  """Exits with `main(argv)`'s status; a UserError that reaches here is one line, status 1."""
  try:
    code = main(argv)
  except errors.UserError as e:
    code = report(e)
  sys.exit(code)
