"""pix2pix-colorize: images, videos, folders and globs through a trained generator (README.md,
"Colourising images and video"; docs/video.md)."""

import argparse
import signal
import sys
import time

import numpy as np

from pix2pix_jax import cli, color, errors, files, hints, images, locks, progress
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize import hint_inputs, shards
from pix2pix_jax.colorize.jobs import Job, classify, plan, skip_existing
from pix2pix_jax.colorize.video import (
  chunk_plan,
  clip,
  hint_track,
  memory,
  settings,
  temporal,
  writer,
)
from pix2pix_jax.hints import files as hint_files

DEFAULT_BATCH_SIZE = 8


def run_images(
  colorizer: colorizer_lib.Colorizer,
  jobs: list[Job],
  overwrite: bool,
  *,
  compare: bool = False,
  show_progress: bool = True,
  hint_files_read: dict[str, object] | None = None,
) -> None:
  """Colourises image jobs in groups of batch_size; sets job.error on failure.

  compare: save the source and the result side by side (`colorizer.side_by_side`).
  Each job's `hints` file colours it (one of another size fails it); hint_files_read: the hint
  files read so far by path (`hint_files.read`), added to as jobs need others.
  show_progress: a progress bar (or summary line) on stderr when there are two or more images.
  """
  read = {} if hint_files_read is None else hint_files_read
  bar = progress.Progress(
    "colourising", len(jobs), unit="images", enabled=show_progress and len(jobs) > 1
  )
  with bar:
    for start in range(0, len(jobs), colorizer.batch_size):
      group, loaded, given = [], [], []
      for job in jobs[start : start + colorizer.batch_size]:
        try:
          files.check_output(job.dst, overwrite=overwrite)
          image = images.load_image(job.src)
          if job.hints is None:
            given.append(None)
          else:
            if job.hints not in read:
              read[job.hints] = hint_files.read(job.hints)
            h, w = image.rgb.shape[:2]
            given.append(
              hint_files.as_hints(read[job.hints], h, w, source=job.hints, photo=job.src)
            )
          loaded.append(image)
          group.append(job)
        except (files.MediaError, hints.HintsError) as e:
          fail(job, str(e), bar)
      if group:
        outputs = colorizer.colorize_images(
          [im.rgb for im in loaded], hints=given if any(g is not None for g in given) else None
        )
        for job, image, rgb in zip(group, loaded, outputs, strict=True):
          _save_image(job, image, rgb, overwrite=overwrite, compare=compare, bar=bar)
      bar.update(len(jobs[start : start + colorizer.batch_size]))


def _save_image(
  job: Job,
  image: images.LoadedImage,
  rgb: np.ndarray,
  *,
  overwrite: bool,
  compare: bool,
  bar: progress.Progress,
) -> None:
  alpha = image.alpha
  if compare:
    rgb = colorizer_lib.side_by_side(image.rgb, rgb)
    if alpha is not None:
      alpha = colorizer_lib.side_by_side(alpha[..., None], alpha[..., None])[..., 0]
  try:
    with locks.output_lock(job.dst), files.atomic_output(job.dst, overwrite=overwrite) as tmp:
      images.save_image(tmp, rgb, alpha=alpha)
    h, w = rgb.shape[:2]
    bar.message(f"{job.src} -> {job.dst}: {w}x{h} image{' (side by side)' if compare else ''}")
  except files.MediaError as e:
    fail(job, str(e), bar)


def load_reference(path: str) -> color.ChromaStats:
  """The --reference photo's chroma statistics; MediaError for an unreadable or gray photo."""
  stats = colorizer_lib.reference_stats(images.load_image(path).rgb)
  if float(np.max(np.hypot(stats.mean[..., 0], stats.mean[..., 1]) + stats.std.max(-1))) < 2.0:
    raise files.MediaError(f"{path}: reference image has no colour to take (it is gray)")
  return stats


def load_colorizer(args: argparse.Namespace, **kwargs: object) -> colorizer_lib.Colorizer:
  """The Colorizer of --model or --workdir, with the render size and batch size asked for."""
  if args.model:
    return colorizer_lib.Colorizer.from_exported(
      args.model, render_size=args.render_size, batch_size=args.batch_size, **kwargs
    )
  return colorizer_lib.Colorizer.from_workdir(
    args.workdir,
    step=args.step,
    render_size=args.render_size,
    batch_size=args.batch_size or DEFAULT_BATCH_SIZE,
    **kwargs,
  )


def fail(job: Job, message: str, bar: progress.Progress | None = None) -> None:
  job.error = message
  line = f"error: {message}"
  if bar is None:
    print(line, file=sys.stderr, flush=True)
  else:
    bar.message(line, sys.stderr)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="pix2pix-colorize",
    description="Colourise images and videos with a trained pix2pix_jax generator.",
  )
  parser.add_argument(
    "inputs", nargs="*", metavar="INPUT", help="files, folders or globs (or --files-from)"
  )
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--workdir", help="training workdir (its checkpoints/)")
  source.add_argument("--model", metavar="FILE.p2p", help="a model file from pix2pix-export")
  parser.add_argument("--output", "-o", required=True, help="output file or folder")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  _add_job_flags(parser)
  _add_encode_flags(parser)
  _add_colour_flags(parser)
  _add_video_flags(parser)
  progress.add_quiet_flag(parser)
  cli.add_verbose_flag(parser)
  return parser


def _add_job_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--render-size", type=int, default=None, help="model resolution (default: training size)"
  )
  parser.add_argument(
    "--batch-size",
    type=int,
    default=None,
    help=f"frames per call (default {DEFAULT_BATCH_SIZE}; a --model file's own)",
  )
  existing = parser.add_mutually_exclusive_group()
  existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
  existing.add_argument(
    "--skip-existing",
    action="store_true",
    help="leave existing outputs as they are (continue an interrupted job)",
  )
  parser.add_argument(
    "--files-from",
    metavar="LIST",
    help="also read INPUTs from LIST, one a line ('-': stdin; blank lines and # comments "
    "skipped; relative paths from the current directory)",
  )
  parser.add_argument(
    "--shard",
    metavar="K/N",
    help="colourise only shard K (0 to N-1) of N of the inputs, dealt round-robin "
    "(default under SLURM: from the array or srun task; --shard 0/1 for all)",
  )
  parser.add_argument("--shard-index", type=int, metavar="K", help="--shard K/N as two flags")
  parser.add_argument("--num-shards", type=int, metavar="N", help="--shard K/N as two flags")


def _add_encode_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--codec", default="auto", help="h264 (default; vp9 for .webm), h265, ...")
  parser.add_argument("--crf", type=int, default=None, help="quality (default: codec's, 18 H.264)")
  parser.add_argument("--preset", default=writer.DEFAULT_PRESET, help="x264/x265 preset")
  parser.add_argument("--pix-fmt", default="yuv420p")


def _add_colour_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--smoothing",
    type=float,
    default=temporal.DEFAULT_SMOOTHING,
    help="temporal chroma smoothing for video, 0 (off) to <1 (weight of the previous frame); "
    "default %(default)s",
  )
  parser.add_argument("--cut-threshold", type=float, default=temporal.DEFAULT_CUT_THRESHOLD)
  parser.add_argument(
    "--consistency", action="store_true", help="report temporal consistency of each video"
  )
  parser.add_argument(
    "--saturation",
    type=float,
    default=1.0,
    help="chroma gain in Lab: 1 as predicted, 0 gray, 2 twice as colourful; default %(default)s",
  )
  parser.add_argument(
    "--reference",
    metavar="IMAGE",
    help="move the colours toward this photo's colour statistics (one photo for all inputs)",
  )
  parser.add_argument(
    "--hints",
    metavar="FILE|DIR",
    help="colour hints for a model trained with them: an RGBA PNG of the input's size (alpha > 0 "
    'pixels give their colour), a JSON list [{"x": .., "y": .., "rgb": [r, g, b]}, ...], for '
    "a clip a keyframe file or a folder of scribbles named by frame index (000120.png); or a "
    "folder with a hint file per input, named as the input (DIR/film.json, DIR/photo.png)",
  )
  parser.add_argument(
    "--hint-motion",
    choices=hint_track.MOTIONS,
    default="track",
    help="clips: keyframe hints move with the picture through their shot (track, default) or "
    "stay where they are painted (fixed)",
  )
  parser.add_argument(
    "--compare",
    action="store_true",
    help="write source (left) and result (right) side by side, twice as wide",
  )


def _add_video_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--workers",
    type=int,
    default=None,
    help="decode -> colourise -> encode pipelines run at once on chunks of a long video "
    "(default: from the cores, accelerators and memory; see docs/video.md)",
  )
  parser.add_argument(
    "--chunk-seconds",
    type=float,
    default=None,
    help="chunk length for --workers, resumable chunk by chunk (default: the clip's duration "
    f"/ {chunk_plan.TARGET_CHUNKS}, {chunk_plan.MIN_DEFAULT_CHUNK_SECONDS:g} to "
    f"{chunk_plan.DEFAULT_CHUNK_SECONDS:g} s; given with --workers 1: one resumable pipeline)",
  )
  parser.add_argument(
    "--start",
    type=_time_arg,
    default=None,
    metavar="T",
    help="videos: colourise from T on (seconds, or HH:MM:SS[.ms]): exactly the frames with "
    "timestamps in [T, T+D), audio, subtitles and chapters cut to match",
  )
  parser.add_argument(
    "--duration",
    type=_time_arg,
    default=None,
    metavar="D",
    help="videos: colourise only D (seconds, or HH:MM:SS[.ms]) from --start (default 0); "
    "default: to the end",
  )


def _time_arg(text: str) -> float:
  try:
    return settings.parse_seconds(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  window = _check_flags(parser, args)
  cli.configure(verbose=args.verbose)
  memory.tune_memory()
  jobs, unhinted = _jobs(parser, args)
  todo = [job for job in jobs if not job.error and not job.skipped]
  start = time.perf_counter()
  if todo:
    _colorize(args, todo, window)
  return _report(jobs, time.perf_counter() - start if todo else 0.0, unhinted)


def _check_flags(
  parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[float, float] | None:
  """parser.error for flags that do not go together; the --start/--duration window or None."""
  if args.model and args.step is not None:
    parser.error("--step selects a checkpoint of --workdir; a --model file has one generator")
  if not 0.0 <= args.smoothing < 1.0:
    parser.error("--smoothing must be in [0, 1)")
  if args.saturation < 0.0:
    parser.error("--saturation must be >= 0")
  if args.workers is not None and args.workers < 1:
    parser.error("--workers must be >= 1")
  if args.chunk_seconds is not None and args.chunk_seconds <= 0:
    parser.error("--chunk-seconds must be > 0")
  if args.duration is not None and args.duration <= 0:
    parser.error("--duration must be > 0")
  if args.start is None and args.duration is None:
    return None
  return (args.start or 0.0, args.duration if args.duration is not None else float("inf"))


def _jobs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[Job], int]:
  """The inputs expanded into jobs, this shard's share, classified, their hint files found,
  existing outputs marked; and how many of them --hints leaves without hints."""
  shard = shards.resolve(args.shard, args.shard_index, args.num_shards)
  inputs = list(args.inputs)
  if args.files_from:
    listed = shards.read_list(args.files_from)
    if not listed:
      raise errors.UserError(f"{args.files_from}: the --files-from list holds no inputs")
    inputs += listed
  if not inputs:
    parser.error("give INPUT files, folders or globs, or --files-from LIST")
  jobs = every = plan(inputs, args.output)
  if shard is not None:
    jobs = shards.select(jobs, shard)
    print(f"shard {shard.index}/{shard.count} ({shard.source}): {len(jobs)} of {len(every)} inputs")
  for job in jobs:
    classify(job)
  unhinted = hint_inputs.assign(jobs, args.hints, every)
  for job in jobs:
    if job.error:
      print(f"error: {job.error}", file=sys.stderr, flush=True)
  if unhinted:
    print(f"{unhinted} of {len(jobs)} inputs have no hint file in {args.hints}: without hints")
  skip_existing(jobs, skip=args.skip_existing)
  return jobs, unhinted


def _colorize(
  args: argparse.Namespace, todo: list[Job], window: tuple[float, float] | None
) -> None:
  """The model loaded once, then every image job, then every video job."""
  reference = load_reference(args.reference) if args.reference else None
  hinted = [job for job in todo if job.hints is not None]
  # One hint file for every input is read (and refused) once, before any is colourised.
  read = {}
  if args.hints and all(job.hints == args.hints for job in todo):
    if not hint_track.is_keyframe_source(args.hints):
      read[args.hints] = hint_files.read(args.hints)
  colorizer = load_colorizer(args, saturation=args.saturation, reference=reference)
  if hinted:
    colorizer.check_takes_hints(args.model or args.workdir)
  run_images(
    colorizer,
    [job for job in todo if job.kind == "image"],
    args.overwrite,
    compare=args.compare,
    show_progress=not args.quiet,
    hint_files_read=read,
  )
  encode = writer.EncodeOptions(
    codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt
  )
  for job in (job for job in todo if job.kind == "video"):
    try:
      result = clip.colorize_video(
        colorizer,
        job.src,
        job.dst,
        hints=job.hints,
        hint_motion=args.hint_motion,
        workers=args.workers,
        chunk_seconds=args.chunk_seconds,
        window=window,
        overwrite=args.overwrite,
        encode=encode,
        smoothing=args.smoothing,
        cut_threshold=args.cut_threshold,
        consistency=args.consistency,
        compare=args.compare,
        progress=not args.quiet,
      )
      print(result.summary(), flush=True)
    except (files.MediaError, hints.HintsError) as e:
      fail(job, str(e))
    except OSError as e:
      fail(job, f"{job.src}: {files.describe_os_error(e)}")


def _report(jobs: list[Job], elapsed: float, unhinted: int = 0) -> int:
  """The closing lines; the exit status (1 where any input failed)."""
  failed = [job for job in jobs if job.error]
  skipped = sum(job.skipped for job in jobs)
  done = len(jobs) - len(failed) - skipped
  skipped_text = f", {skipped} skipped (output exists)" if skipped else ""
  unhinted_text = f", {unhinted} without hints (no hint file of theirs)" if unhinted else ""
  print(
    f"done: {done} of {len(jobs)} inputs colourised{skipped_text}{unhinted_text} in {elapsed:.1f} s"
  )
  if failed:
    print(f"{len(failed)} failed:", file=sys.stderr)
    for job in failed:
      print(f"  {job.error}", file=sys.stderr)
    return 1
  return 0


class Interrupted(KeyboardInterrupt):
  """SIGTERM, raised in the main thread as Ctrl-C is, so that outputs in progress are removed."""

  def __init__(self, signum: int):
    super().__init__()
    self.signum = signum


def _on_sigterm(signum: int, frame: object) -> None:
  raise Interrupted(signum)


def run() -> None:
  """The `pix2pix-colorize` console entry point: SIGTERM stops it as Ctrl-C does."""
  signal.signal(signal.SIGTERM, _on_sigterm)
  try:
    cli.run(main)
  except KeyboardInterrupt as e:
    print(
      "interrupted: every output written so far is complete; "
      "run the same command with --skip-existing to continue",
      file=sys.stderr,
    )
    sys.exit(128 + getattr(e, "signum", signal.SIGINT))


if __name__ == "__main__":
  run()
