"""pix2pix-keyframes: the frames of a clip to paint hints on (the first frame of each shot, and
every --every seconds in long shots) as gray PNGs, and the keyframe file that lists them
(README.md, "Keyframe hints on clips")."""

import argparse
import json
import os
import shutil
import tempfile

import numpy as np

from pix2pix_jax import cli, errors, files, images
from pix2pix_jax import progress as progress_lib
from pix2pix_jax.colorize.video import hint_track, probe, source, temporal
from pix2pix_jax.hints import track as track_lib

KEYFRAME_FILE = "keyframes.json"


def pick_frames(
  src: str,
  *,
  every: float | None = None,
  cut_threshold: float = temporal.DEFAULT_CUT_THRESHOLD,
  progress: bool = True,
) -> tuple[list[tuple[int, np.ndarray]], int]:
  """([(frame index, its gray uint8 [H, W, 3])] of each shot's first frame, and of every
  `every` seconds within a shot; the clip's frame count)."""
  info = probe.probe(src)
  backend, reader = source.choose_backend(src, info)
  batches = source.iter_chunks(src, 16, reader=reader, backend=backend, info=info)
  step = max(1, round(every * float(source.frame_rate(info, reader)))) if every else None
  is_cut, picked, shot_start, t = hint_track.CutDetector(cut_threshold), [], 0, 0
  total = len(reader) if reader is not None else None
  with progress_lib.Progress(os.path.basename(src), total, unit="frames", enabled=progress) as bar:
    for frames in batches:
      for frame, small in zip(frames, track_lib.small_luma(frames), strict=True):
        if is_cut(small):
          shot_start = t
        if t == shot_start or (step and (t - shot_start) % step == 0):
          picked.append((t, track_lib.model_gray(frame)))
        t += 1
      bar.update(len(frames))
  if not picked:
    raise files.MediaError(f"{src}: video has no frames")
  return picked, t


def write(folder: str, picked: list[tuple[int, np.ndarray]]) -> None:
  """The frames as NNNNNN.png and their keyframe file (entries "painted"), written into a new
  folder and renamed onto `folder` (which must not exist or be empty) when complete."""
  if os.path.isdir(folder) and os.listdir(folder):
    raise files.MediaError(f"{folder}: folder exists and is not empty")
  parent = os.path.dirname(os.path.abspath(folder))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".keyframes-", dir=parent)
  try:
    entries = []
    for frame, gray in picked:
      name = f"{frame:06d}.png"
      images.save_image(os.path.join(tmp, name), gray)
      entries.append({"frame": frame, "painted": name})
    with open(os.path.join(tmp, KEYFRAME_FILE), "w", encoding="utf-8") as f:
      json.dump({"keyframes": entries}, f, indent=1)
    if os.path.isdir(folder):
      os.rmdir(folder)
    os.replace(tmp, folder)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="pix2pix-keyframes",
    description="Write the frames of a clip to paint colour hints on, and their keyframe file "
    "(pass it to pix2pix-colorize --hints once painted).",
  )
  parser.add_argument("clip", help="the video")
  parser.add_argument("--output", "-o", required=True, help="a new (or empty) folder")
  parser.add_argument(
    "--every", type=float, default=None, metavar="S", help="also every S seconds within a shot"
  )
  parser.add_argument("--cut-threshold", type=float, default=temporal.DEFAULT_CUT_THRESHOLD)
  progress_lib.add_quiet_flag(parser)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  if args.every is not None and args.every <= 0:
    raise errors.UserError("--every must be > 0 seconds")
  if not os.path.isfile(args.clip):
    raise files.MediaError(f"{args.clip}: no such file")
  if os.path.isdir(args.output) and os.listdir(args.output):
    raise files.MediaError(f"{args.output}: folder exists and is not empty")
  picked, _ = pick_frames(
    args.clip, every=args.every, cut_threshold=args.cut_threshold, progress=not args.quiet
  )
  write(args.output, picked)
  path = os.path.join(args.output, KEYFRAME_FILE)
  print(f"{args.clip}: {len(picked)} keyframes -> {path} (paint on the PNGs, then --hints {path})")
  return 0


def run() -> None:
  cli.run(main)


if __name__ == "__main__":
  run()
