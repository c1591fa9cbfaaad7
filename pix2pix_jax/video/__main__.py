"""`python -m pix2pix_jax.video make-sample OUT [--overwrite]`: video tools on the command line."""

import argparse

from pix2pix_jax import cli
from pix2pix_jax.video import sample_clip


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m pix2pix_jax.video", description="Video tools.")
  sub = parser.add_subparsers(dest="command", required=True)
  sample_clip.add_arguments(
    sub.add_parser("make-sample", help=sample_clip.HELP, description=sample_clip.HELP)
  )
  args = parser.parse_args(argv)
  return sample_clip.command(args)


if __name__ == "__main__":
  cli.run(main)
