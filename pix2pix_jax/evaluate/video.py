"""pix2pix-evaluate --video: colour clips turned gray, N hints sampled from the truth on each
shot's first frame (and every K frames), colourised with the hints held fixed, tracked, or fresh
on every frame (oracle), and measured against the truth beside the nearest-hint fill of the same
hints (docs/video.md, "Evaluating clips")."""

import csv
import dataclasses
import fractions
import json
import os
import tempfile
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from pix2pix_jax import color, files
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import clip as clip_lib
from pix2pix_jax.colorize.video import hint_track, probe, source, temporal, writer
from pix2pix_jax.evaluate import video_metrics
from pix2pix_jax.hints import device as hint_ops
from pix2pix_jax.hints import files as hint_files
from pix2pix_jax.hints import keyframes
from pix2pix_jax.hints import track as track_lib

MODES = ("fixed", "track", "oracle")
METHODS = ("model", "nearest_hint")
_LOSSLESS = writer.EncodeOptions(codec="ffv1", pix_fmt="gbrp")


@dataclasses.dataclass(frozen=True)
class Settings:
  hints: int = 20
  keyframe_every: int | None = None  # frames; None: each shot's first frame only
  modes: tuple[str, ...] = MODES
  seed: int = 0
  cut_threshold: float = temporal.DEFAULT_CUT_THRESHOLD
  smoothing: float = temporal.DEFAULT_SMOOTHING


def read_clip(path: str) -> tuple[np.ndarray, fractions.Fraction]:
  """All frames of `path` (uint8 [T, H, W, 3]) and its frame rate."""
  info = probe.probe(path)
  backend, reader = source.choose_backend(path, info)
  fps = source.frame_rate(info, reader)
  frames = list(source.iter_chunks(path, 16, reader=reader, backend=backend, info=info))
  if not frames:
    raise files.MediaError(f"{path}: video has no frames")
  return np.concatenate(frames), fps


def shots(gray: np.ndarray, cut_threshold: float) -> list[tuple[int, int]]:
  """[(first, last)] frame of each shot, cut as the colourising first pass cuts."""
  is_cut = hint_track.CutDetector(cut_threshold)
  starts = [t for t, small in enumerate(track_lib.small_luma(gray)) if is_cut(small)]
  return list(zip(starts, [s - 1 for s in starts[1:]] + [len(gray) - 1], strict=True))


def keyframe_indices(clip_shots: list[tuple[int, int]], every: int | None) -> list[int]:
  """Each shot's first frame, and every `every` frames within the shot."""
  return [t for lo, hi in clip_shots for t in range(lo, hi + 1, every or hi - lo + 1)]


def sample_points(truth: np.ndarray, n: int, rng: np.random.Generator) -> list[dict]:
  """n points at distinct random pixels of a frame with their true colours (a point list)."""
  h, w = truth.shape[:2]
  picks = rng.choice(h * w, size=min(n, h * w), replace=False)
  return [
    {"x": int(i % w), "y": int(i // w), "rgb": [int(v) for v in truth[i // w, i % w]]}
    for i in picks
  ]


def sample_keyframes(
  truth: np.ndarray, frames: Sequence[int], settings: Settings
) -> list[keyframes.Keyframe]:
  h, w = truth.shape[1:3]
  out = []
  for t in frames:
    rng = np.random.default_rng([settings.seed, t])
    points = sample_points(truth[t], settings.hints, rng)
    out.append(keyframes.Keyframe(t, hint_files.from_points(points, h, w)))
  return out


def nearest_keyframe_distance(clip_shots: list[tuple[int, int]], keys: Sequence[int]) -> np.ndarray:
  """Per frame, the distance in frames to the keyframe whose hints it takes (its shot's nearer
  one, as the tracks give them); -1 where its shot has none."""
  last = clip_shots[-1][1]
  out = np.full(last + 1, -1, np.int64)
  for lo, hi in clip_shots:
    inside = [k for k in keys if lo <= k <= hi]
    for t in range(lo, hi + 1) if inside else ():
      out[t] = min(abs(t - k) for k in inside)
  return out


def nearest_fill(gray: np.ndarray, found: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
  """The nearest-hint fill of one frame's hint pixels ((y, x), ab) on its lightness, uint8."""
  lightness = color.luminance(color.uint8_to_float(gray[None]))
  if found is None:
    ab = jnp.zeros(lightness.shape[:-1] + (2,), jnp.float32)
  else:
    yx, ab = found
    ab = hint_ops.nearest_fill(ab[None], yx[None].astype(np.float32), *gray.shape[:2])
  return np.asarray(color.float_to_uint8(color.combine(lightness, ab)))[0]


def evaluate_clip(
  colorizer: colorizer_lib.Colorizer, path: str, settings: Settings, tmp: str
) -> tuple[list[dict], list[dict]]:
  """(per-frame rows, per-clip rows) of one clip for every mode and method."""
  truth, fps = read_clip(path)
  gray = track_lib.model_gray(truth)
  name = os.path.basename(path)
  gray_path = os.path.join(tmp, "gray.mkv")
  encoder = writer.FrameWriter(gray_path, gray.shape[2], gray.shape[1], fps, _LOSSLESS)
  encoder.write(gray)
  encoder.close()
  info = probe.probe(gray_path)
  clip_shots = shots(gray, settings.cut_threshold)
  key_frames = keyframe_indices(clip_shots, settings.keyframe_every)
  flows = video_metrics.true_flows(truth)
  frame_rows, clip_rows = [], [_clip_row(name, "truth", "truth", truth, truth, flows)]
  for mode in settings.modes:
    oracle = mode == "oracle"
    keys = sample_keyframes(truth, range(len(truth)) if oracle else key_frames, settings)
    motion = "fixed" if oracle else mode
    dst = os.path.join(tmp, f"{mode}.mkv")
    clip_lib.colorize_video(
      colorizer,
      gray_path,
      dst,
      hints=keys,
      hint_motion=motion,
      workers=1,
      overwrite=True,
      encode=_LOSSLESS,
      smoothing=settings.smoothing,
      cut_threshold=settings.cut_threshold,
      progress=False,
      note=lambda line: None,
    )
    model, _ = read_clip(dst)
    track = hint_track.first_pass(
      gray_path, info, keys, motion=motion, cut_threshold=settings.cut_threshold, progress=False
    )
    fill = np.stack([nearest_fill(gray[t], track.points(t)) for t in range(len(gray))])
    distance = nearest_keyframe_distance(clip_shots, [k.frame for k in keys])
    for method, frames in zip(METHODS, (model, fill), strict=True):
      values = video_metrics.frame_metrics(frames, truth)
      for t in range(len(frames)):
        frame_rows.append(
          {"clip": name, "mode": mode, "method": method, "frame": t}
          | {"distance": int(distance[t])}
          | {k: float(v[t]) for k, v in values.items()}
        )
      clip_rows.append(_clip_row(name, mode, method, frames, truth, flows, values))
  return frame_rows, clip_rows


def _clip_row(name, mode, method, frames, truth, flows, values=None) -> dict:
  values = values or video_metrics.frame_metrics(frames, truth)
  return {
    "clip": name,
    "mode": mode,
    "method": method,
    "frames": len(frames),
    "ciede2000": float(np.mean(values["ciede2000"])),
    "psnr": float(np.mean(values["psnr"][np.isfinite(values["psnr"])]))
    if np.isfinite(values["psnr"]).any()
    else float("inf"),
    "cdc": video_metrics.cdc(frames),
    "warp_error": video_metrics.warp_error(frames, flows),
  }


def summarize(clip_rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
  """{mode: {method: {metric: mean over clips}}}."""
  out: dict[str, dict[str, dict[str, float]]] = {}
  for row in clip_rows:
    out.setdefault(row["mode"], {}).setdefault(row["method"], {})
  for mode, methods in out.items():
    for method in methods:
      rows = [r for r in clip_rows if r["mode"] == mode and r["method"] == method]
      methods[method] = {
        k: float(np.mean([r[k] for r in rows])) for k in ("ciede2000", "psnr", "cdc", "warp_error")
      }
  return out


def _write_csv(path: str, rows: list[dict]) -> None:
  with files.atomic_output(path, overwrite=True) as tmp, open(tmp, "w", newline="") as f:
    out = csv.DictWriter(f, fieldnames=list(rows[0]))
    out.writeheader()
    out.writerows(rows)


def plot_distance(path: str, frame_rows: list[dict]) -> None:
  """CIEDE2000 against the distance from the keyframe, one line per mode and method (a colour
  per mode, a style per method); the oracle, whose every frame is a keyframe, as its mean."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(6, 4))
  for mode, colour in zip(MODES, ("C0", "C2", "C3"), strict=True):
    for method, style in zip(METHODS, ("-", ":"), strict=True):
      rows = [r for r in frame_rows if r["mode"] == mode and r["method"] == method]
      rows = [r for r in rows if r["distance"] >= 0]
      if not rows:
        continue
      d = np.array([r["distance"] for r in rows])
      e = np.array([r["ciede2000"] for r in rows])
      if mode == "oracle":
        label = f"oracle {method} (fresh hints on every frame)"
        ax.axhline(float(e.mean()), color=colour, linestyle=style, label=label)
        continue
      xs = np.unique(d)
      ax.plot(xs, [e[d == x].mean() for x in xs], style, color=colour, label=f"{mode} {method}")
  ax.set_xlabel("frames from the keyframe")
  ax.set_ylabel("CIEDE2000 (lower is better)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  with files.atomic_output(path, overwrite=True) as tmp:
    fig.savefig(tmp, dpi=100)
  plt.close(fig)


def evaluate_clips(
  colorizer: colorizer_lib.Colorizer, paths: Sequence[str], settings: Settings, output: str
) -> dict:
  """Every clip evaluated; per_frame.csv, per_clip.csv, summary.json and ciede2000_distance.png
  written into `output`; the summary returned."""
  colorizer.check_takes_hints()
  frame_rows, clip_rows = [], []
  for path in paths:
    with tempfile.TemporaryDirectory() as tmp:
      frames, clips = evaluate_clip(colorizer, path, settings, tmp)
    frame_rows += frames
    clip_rows += clips
  os.makedirs(output, exist_ok=True)
  _write_csv(os.path.join(output, "per_frame.csv"), frame_rows)
  _write_csv(os.path.join(output, "per_clip.csv"), clip_rows)
  summary = {"settings": dataclasses.asdict(settings), "clips": list(paths)}
  summary["mean_over_clips"] = summarize(clip_rows)
  files.write_atomic(os.path.join(output, "summary.json"), json.dumps(summary, indent=1))
  plot_distance(os.path.join(output, "ciede2000_distance.png"), frame_rows)
  return summary


def format_summary(summary: dict) -> str:
  """A text table: one row per mode and method, the means over clips."""
  lines = [f"{'mode':<8}{'method':<14}{'CIEDE2000':>10}{'PSNR':>8}{'CDC':>10}{'warp err':>10}"]
  for mode, methods in summary["mean_over_clips"].items():
    for method, m in methods.items():
      lines.append(
        f"{mode:<8}{method:<14}{m['ciede2000']:>10.3f}{m['psnr']:>8.2f}{m['cdc']:>10.5f}"
        f"{m['warp_error']:>10.4f}"
      )
  return "\n".join(lines)
