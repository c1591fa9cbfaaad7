"""How hints should move, measured with the nearest-hint fill (no model) against the true colours:
20 true points on each keyframe, CIEDE2000 over the frames.

- fixed against tracked, hints on each shot's first frame: zoompan clips made from an embedded
  photo (over the second half of 40 frames) and any real clips given (over every frame);
- between two keyframes (every --keyframe-every frames), the nearer keyframe's hints against a
  blend of both (`Options.blend`, the default), on the real clips.

Means over --seeds hint draws.

  python experiments/package_data.py --out data/packages     # the real clips (Debian packages)
  python experiments/hint_motion.py --clips data/packages/clips/*.{mp4,avi} [--seeds 3]
"""

import argparse
import os
import subprocess

import numpy as np

from pix2pix_jax import images
from pix2pix_jax.colorize.video import probe
from pix2pix_jax.evaluate import video as video_eval
from pix2pix_jax.evaluate import video_metrics
from pix2pix_jax.hints import track as track_lib

# ffmpeg zoompan over a 1280-wide photo, 40 frames at 320x180.
SYNTHETIC = {
  "pan 2 px a frame": "zoompan=z=2:x='100+on*8':y='ih/4':d=1:s=320x180:fps=25",
  "slow pan and zoom": "zoompan=z='1+0.002*on':x='iw/4+on*2':y='ih/4':d=1:s=320x180:fps=25",
}


def make_clip(path: str, zoompan: str) -> str:
  photo = os.path.join(images.SAMPLES_DIR, "eval", "sklearn_china.jpg")
  cmd = [probe.ffmpeg_exe(), "-y", "-v", "error", "-loop", "1", "-i", photo, "-vf"]
  cmd += [f"scale=1280:-2,{zoompan},format=yuv420p", "-frames:v", "40"]
  subprocess.run(cmd + ["-c:v", "libx264", "-crf", "16", path], check=True)
  return path


def fill_errors(
  truth: np.ndarray, runs: dict[str, dict], seeds: int, every: int | None, from_frame: int
) -> dict[str, float]:
  """Mean CIEDE2000 of the nearest-hint fill from frame `from_frame` on, per named `track`
  keyword set, hints sampled on each shot's first frame (and every `every` frames)."""
  gray = track_lib.model_gray(truth)
  luma = track_lib.small_luma(gray)
  clip_shots = video_eval.shots(gray, video_eval.Settings().cut_threshold)
  cuts = np.zeros(len(luma), bool)
  cuts[[lo for lo, _ in clip_shots]] = True
  frames = video_eval.keyframe_indices(clip_shots, every)
  out: dict[str, list[float]] = {name: [] for name in runs}
  for seed in range(seeds):
    keys = video_eval.sample_keyframes(truth, frames, video_eval.Settings(seed=seed))
    for name, kwargs in runs.items():
      track = track_lib.track(luma, keys, cuts, **kwargs)
      fill = np.stack([video_eval.nearest_fill(gray[t], track.points(t)) for t in range(len(gray))])
      errors = video_metrics.frame_metrics(fill, truth)["ciede2000"]
      out[name].append(float(errors[from_frame:].mean()))
  return {name: float(np.mean(values)) for name, values in out.items()}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--clips", nargs="*", default=[], help="real colour clips")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--keyframe-every", type=int, default=30)
  parser.add_argument("--work", default="/tmp/hint_motion")
  args = parser.parse_args()
  os.makedirs(args.work, exist_ok=True)
  clips = {
    name: (video_eval.read_clip(make_clip(os.path.join(args.work, f"{i}.mp4"), zoompan))[0], 20)
    for i, (name, zoompan) in enumerate(SYNTHETIC.items())
  }
  clips.update({os.path.basename(path): (video_eval.read_clip(path)[0], 0) for path in args.clips})

  motion = {"fixed": {"still": True}, "tracked": {}}
  print("| clip | fixed | tracked | tracked / fixed |\n|---|---:|---:|---:|")
  for name, (truth, from_frame) in clips.items():
    errors = fill_errors(truth, motion, args.seeds, None, from_frame)
    ratio = errors["tracked"] / errors["fixed"]
    print(f"| {name} | {errors['fixed']:.2f} | {errors['tracked']:.2f} | {ratio:.2f} |")

  between = {"nearer": {"options": track_lib.Options(blend=False)}, "blend": {}}
  every = args.keyframe_every
  print(f"\nkeyframes every {every} frames, tracked")
  print("| clip | nearer | blend | blend / nearer |\n|---|---:|---:|---:|")
  for path in args.clips:
    truth, _ = clips[os.path.basename(path)]
    errors = fill_errors(truth, between, args.seeds, every, 0)
    ratio = errors["blend"] / errors["nearer"]
    print(
      f"| {os.path.basename(path)} | {errors['nearer']:.2f} | {errors['blend']:.2f} | {ratio:.2f} |"
    )


if __name__ == "__main__":
  main()
