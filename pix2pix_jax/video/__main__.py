"""`python -m pix2pix_jax.video make-sample OUT [--overwrite]`: video tools on the command line."""

import argparse
import sys

from pix2pix_jax import errors
from pix2pix_jax.video import sample_clip


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m pix2pix_jax.video", description="Video tools.")
  sub = parser.add_subparsers(dest="command", required=True)
  sample_clip.add_arguments(
    sub.add_parser("make-sample", help=sample_clip.HELP, description=sample_clip.HELP)
  )
  args = parser.parse_args(argv)
  return sample_clip.command(args)


def run() -> None:
  """Command-line entry point: exits with main()'s status, one line for a user error."""
  try:
    sys.exit(main())
  except errors.UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  run()
