"""Fixed against tracked keyframe hints on clips made from the embedded photos (docs/video.md,
"Evaluating clips"): the nearest-hint fill of 20 true points on frame 0, CIEDE2000 over the
second half of 40 frames, mean over seeds.

  python experiments/hint_motion.py [--seeds 3] [--work /tmp/hint_motion]
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
CLIPS = {
  "pan 2 px a frame": "zoompan=z=2:x='100+on*8':y='ih/4':d=1:s=320x180:fps=25",
  "slow pan and zoom": "zoompan=z='1+0.002*on':x='iw/4+on*2':y='ih/4':d=1:s=320x180:fps=25",
}


def make_clip(path: str, zoompan: str) -> str:
  photo = os.path.join(images.SAMPLES_DIR, "eval", "sklearn_china.jpg")
  cmd = [probe.ffmpeg_exe(), "-y", "-v", "error", "-loop", "1", "-i", photo, "-vf"]
  cmd += [f"scale=1280:-2,{zoompan},format=yuv420p", "-frames:v", "40"]
  subprocess.run(cmd + ["-c:v", "libx264", "-crf", "16", path], check=True)
  return path


def fill_errors(clip: str, seeds: int) -> dict[str, float]:
  truth, _ = video_eval.read_clip(clip)
  gray = track_lib.model_gray(truth)
  luma = track_lib.small_luma(gray)
  cuts = np.r_[True, np.zeros(len(luma) - 1, bool)]
  out: dict[str, list[float]] = {"fixed": [], "track": []}
  for seed in range(seeds):
    keys = video_eval.sample_keyframes(truth, [0], video_eval.Settings(seed=seed))
    for motion in out:
      track = track_lib.track(luma, keys, cuts, still=motion == "fixed")
      fill = np.stack([video_eval.nearest_fill(gray[t], track.points(t)) for t in range(len(gray))])
      errors = video_metrics.frame_metrics(fill, truth)["ciede2000"]
      out[motion].append(float(errors[len(errors) // 2 :].mean()))
  return {motion: float(np.mean(values)) for motion, values in out.items()}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--work", default="/tmp/hint_motion")
  args = parser.parse_args()
  os.makedirs(args.work, exist_ok=True)
  print("| clip | fixed | tracked | tracked / fixed |\n|---|---:|---:|---:|")
  for i, (name, zoompan) in enumerate(CLIPS.items()):
    errors = fill_errors(make_clip(os.path.join(args.work, f"{i}.mp4"), zoompan), args.seeds)
    ratio = errors["track"] / errors["fixed"]
    print(f"| {name} | {errors['fixed']:.2f} | {errors['track']:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
  main()
