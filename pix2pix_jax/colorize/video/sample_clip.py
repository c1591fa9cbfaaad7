"""Sample clips (pix2pix-make-sample): a pan/zoom over still photos, hard cuts between them, a
soundtrack (docs/video.md)."""

import argparse
import glob
import json
import os
import subprocess

from pix2pix_jax import cli, files, images
from pix2pix_jax.colorize.video import probe

HELP = "render a pan/zoom clip over still photos"


def sample_photos() -> list[str]:
  """The embedded sample photographs, sorted."""
  return sorted(glob.glob(os.path.join(images.SAMPLES_DIR, "**", "*.jpg"), recursive=True))


def make_sample_clip(
  out_path: str,
  photos: list[str] | None = None,
  seconds: float = 6.0,
  fps: float = 25.0,
  size: int | tuple[int, int] = (320, 240),
  audio: bool = True,
  *,
  codec: str | None = None,
  pix_fmt: str = "yuv420p",
) -> str:
  """Renders a pan/zoom over still photos (hard cuts between them) with ffmpeg.

  Each photo gets an equal share of `seconds`; the soundtrack is a 440 Hz sine plus pink
  noise. size: (width, height) or a square side. The codec follows the extension unless given.
  """
  photos = list(photos) if photos else sample_photos()[:3]
  if not photos:
    raise ValueError("no photos given and no embedded samples found")
  width, height = (size, size) if isinstance(size, int) else size
  total = max(1, int(round(seconds * fps)))
  per = [total // len(photos) + (i < total % len(photos)) for i in range(len(photos))]
  photos, per = [p for p, n in zip(photos, per, strict=True) if n], [n for n in per if n]
  cmd = [probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
  for photo in photos:
    cmd += ["-i", photo]
  graph = []
  for i, n in enumerate(per):
    # Upscale first so that zoompan's integer crop offsets move smoothly.
    graph.append(
      f"[{i}:v]scale={width * 4}:{height * 4}:force_original_aspect_ratio=increase,"
      f"crop={width * 4}:{height * 4},setsar=1,"
      f"zoompan=z='1+0.3*on/{max(n - 1, 1)}':x='(iw-iw/zoom)*on/{max(n - 1, 1)}':"
      f"y='(ih-ih/zoom)/2':d={n}:s={width}x{height}:fps={fps},setsar=1[v{i}]"
    )
  inputs = "".join(f"[v{i}]" for i in range(len(per)))
  graph.append(f"{inputs}concat=n={len(per)}:v=1:a=0,format={pix_fmt}[v]")
  maps = ["-map", "[v]"]
  duration = total / fps
  if audio:
    cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}"]
    cmd += ["-f", "lavfi", "-i", f"anoisesrc=color=pink:amplitude=0.05:duration={duration}"]
    a, b = len(photos), len(photos) + 1
    graph.append(f"[{a}:a][{b}:a]amix=inputs=2:duration=shortest[a]")
    maps += ["-map", "[a]"]
  ext = os.path.splitext(out_path)[1].lower()
  vcodec = codec or ("libvpx-vp9" if ext == ".webm" else "libx264")
  cmd += ["-filter_complex", ";".join(graph), *maps, "-c:v", vcodec, "-frames:v", str(total)]
  if audio:
    cmd += ["-c:a", "libopus" if ext == ".webm" else "aac"]
  cmd += [out_path]
  proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
  if proc.returncode:
    raise files.MediaError(f"{out_path}: ffmpeg failed ({probe.last_line(proc.stderr)})")
  return out_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The make-sample command's arguments."""
  parser.add_argument("output")
  parser.add_argument("--photos", nargs="*", default=None)
  parser.add_argument("--seconds", type=float, default=6.0)
  parser.add_argument("--fps", type=float, default=25.0)
  parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
  parser.add_argument("--no-audio", action="store_true")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")


def command(args: argparse.Namespace) -> int:
  """Runs make-sample: writes the clip atomically, prints {"output", "frames"} as JSON."""
  width, height = (int(v) for v in args.size.lower().split("x"))
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with files.atomic_output(args.output, overwrite=args.overwrite) as tmp:
    make_sample_clip(tmp, args.photos, args.seconds, args.fps, (width, height), not args.no_audio)
  print(json.dumps({"output": args.output, "frames": int(round(args.seconds * args.fps))}))
  return 0


def main(argv: list[str] | None = None) -> int:
  """The make-sample command: parses `argv`, returns the exit status."""
  parser = argparse.ArgumentParser(prog="pix2pix-make-sample", description=HELP)
  add_arguments(parser)
  return command(parser.parse_args(argv))


def run() -> None:
  """Console entry point (pix2pix-make-sample)."""
  cli.run(main)
