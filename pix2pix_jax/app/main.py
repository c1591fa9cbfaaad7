"""pix2pix-app: a local page to colour a photo by eye (docs/app.md)."""

import argparse
import shutil
import sys

from pix2pix_jax import cli

DEFAULT_PORT = 7860
DEFAULT_MAX_FILE_SIZE = "100mb"


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="pix2pix-app",
    description="Serve a page to colour photos with a trained generator: click to put colour "
    "hints, see the result at once, download it with its hint files.",
  )
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--workdir", help="training workdir (its checkpoints/)")
  source.add_argument("--model", metavar="FILE.p2p", help="a model file from pix2pix-export")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument(
    "--render-size", type=int, default=None, help="model resolution (default: training size)"
  )
  parser.add_argument(
    "--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine)"
  )
  parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default %(default)s")
  parser.add_argument(
    "--share", action="store_true", help="also make a public gradio.live link (off by default)"
  )
  parser.add_argument(
    "--max-megapixels",
    type=float,
    default=None,
    help="refuse larger photos (default 50; pix2pix-colorize takes any size)",
  )
  parser.add_argument(
    "--max-file-size",
    default=DEFAULT_MAX_FILE_SIZE,
    help="refuse larger uploads (default %(default)s)",
  )
  cli.add_verbose_flag(parser)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  cli.configure(verbose=args.verbose)
  # Imported here: --help answers without loading jax and gradio.
  from pix2pix_jax.app import engine as engine_lib  # noqa: PLC0415
  from pix2pix_jax.app import page  # noqa: PLC0415
  from pix2pix_jax.colorize import colorizer as colorizer_lib  # noqa: PLC0415

  if args.model:
    colorizer = colorizer_lib.Colorizer.from_exported(args.model, render_size=args.render_size)
    flags = ("--model", args.model)
  else:
    colorizer = colorizer_lib.Colorizer.from_workdir(
      args.workdir, step=args.step, render_size=args.render_size, batch_size=1
    )
    # The page colourises one image at a time; the command it prints must use the same batch
    # size for the same result to the bit (XLA's batch-8 program can differ by a level).
    flags = ("--workdir", args.workdir, "--batch-size", "1")
    if args.step is not None:
      flags += ("--step", str(args.step))
  if args.render_size is not None:
    flags += ("--render-size", str(args.render_size))
  limit = engine_lib.DEFAULT_MAX_MEGAPIXELS if args.max_megapixels is None else args.max_megapixels
  engine = engine_lib.Engine(colorizer, max_megapixels=limit, model_flags=flags)
  print(f"pix2pix-app: compiling the model ({engine.description})", file=sys.stderr, flush=True)
  engine.warm_up()
  root = page.new_root()
  try:
    demo = page.build(engine, root)
    _, url, share_url = demo.launch(
      server_name=args.host,
      server_port=args.port,
      share=args.share,
      max_file_size=args.max_file_size,
      prevent_thread_lock=True,
      quiet=True,
      ssr_mode=False,
      css=page.CSS,
      head=page.DRAG_SCRIPT,
    )
    print(f"pix2pix-app: serving on {url}", flush=True)
    if share_url:
      print(f"pix2pix-app: public link {share_url}", flush=True)
    try:
      demo.block_thread()
    except KeyboardInterrupt:
      pass
    finally:
      demo.close()
  finally:
    shutil.rmtree(root, ignore_errors=True)
  return 0


def run() -> None:
  """The `pix2pix-app` console entry point."""
  cli.run(main)


if __name__ == "__main__":
  run()
