"""`pix2pix-evaluate`: metrics.json, per_image.csv and gallery.html of a workdir's generator
beside gray and mean-chroma baselines (and hint fills with --hints), via `evaluator.Evaluator`.
Usage and outputs: README.md, "Evaluation"; hints: docs/video.md, "Colour hints"."""

import argparse
import csv
import dataclasses
import functools
import io
import json
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from pix2pix_jax import (
  checkpoint,
  cli,
  color,
  config_lib,
  errors,
  files,
  hints,
  images,
  metrics,
  models,
  parallel,
  progress,
  xla_flags,
)
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.evaluate import common, evaluator, hint_policy
from pix2pix_jax.evaluate import video as video_eval
from pix2pix_jax.hints import device as hint_ops

PREDICTORS = ("model", "gray", "mean_chroma")
DEFAULT_EVAL_BATCH = 8
GALLERY_SIZE = 500  # at most this many images in the HTML gallery (all are in the CSV)
THUMBNAIL_SIZE = 128


class EvaluationError(errors.UserError, ValueError):
  """The evaluation cannot run: missing workdir or checkpoint, unknown or empty data."""


@dataclasses.dataclass
class EvalResult:
  """Everything the evaluation command writes."""

  values: dict[str, dict[str, np.ndarray]]  # predictor -> metric -> [num_images]
  labels: list[str]  # file (relative path) or tfds "split[index]" of each image
  thumbnails: list[dict[str, bytes]]  # JPEGs of "input", "model", "target", first images only
  mean_ab: tuple[float, float]  # the chroma of the mean-chroma baseline (eval-set mean)
  info: dict[str, Any]  # workdir, step, data, crop size, ...
  curve: hint_policy.HintCurve | None = None  # --hint-policy error


def data_overrides(data: str, config: ml_collections.ConfigDict) -> tuple[str, dict[str, Any]]:
  """`--data` -> (a short name for the output folder, overrides of the `data.*` config fields).

  "samples": the embedded samples' eval split. An existing folder: its eval/ subfolder if it has
  train/ and eval/ subfolders, else every image in it. Anything else is a tfds name with an
  optional split, "places365_small[validation]" (default: the training config's eval split).
  """
  if data == "samples":
    return "samples", {"data.source": "samples"}
  path = os.path.expanduser(data)
  if os.path.isdir(path):
    folder = os.path.abspath(path)
    # eval_fraction 1: without train/ and eval/ subfolders every file falls in the eval split.
    overrides = {"data.source": "folder", "data.folder": folder, "data.eval_fraction": 1.0}
    return os.path.basename(folder) or "folder", overrides
  if os.sep in data or data.startswith(".") or os.path.exists(path):
    raise EvaluationError(f"{data}: no such folder")
  match = re.fullmatch(r"([\w.:/-]+?)(?:\[(.+)\])?", data)
  if not match:
    raise EvaluationError(f"--data {data!r} is neither 'samples', a folder, nor 'tfds_name[split]'")
  name, split = match.group(1), match.group(2) or config.data.eval_split
  slug = re.sub(r"[^\w.-]+", "_", f"{name}_{split}").strip("_")
  return slug, {"data.source": "tfds", "data.name": name, "data.eval_split": split}


def image_labels(config: ml_collections.ConfigDict, count: int) -> list[str]:
  """What each evaluated image is called in the CSV and gallery, in iteration order."""
  if config.data.source == "tfds":
    return [f"{config.data.eval_split}[{i}]" for i in range(count)]
  from pix2pix_jax import input_pipeline  # TensorFlow: after cli.configure

  folder = images.SAMPLES_DIR if config.data.source == "samples" else config.data.folder
  listing = input_pipeline.list_images(folder, "eval", float(config.data.eval_fraction))
  return [os.path.relpath(p, listing.folder) for p in listing.files[:count]]


def _thumbnail(image: np.ndarray) -> bytes:
  picture = Image.fromarray(image)
  picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BICUBIC)
  buffer = io.BytesIO()
  picture.save(buffer, format="JPEG", quality=85)
  return buffer.getvalue()


@dataclasses.dataclass(frozen=True)
class HintSampling:
  """--hints: `count` hints sampled from each ground truth, each the mean true ab of a `patch`
  square, image i's from key fold_in(seed, i) (`hint_ops.image_keys`)."""

  count: int
  patch: int = 1
  seed: int = 0


def evaluate_workdir(
  workdir: str,
  data: str,
  *,
  batch_size: int | None = None,
  max_examples: int = -1,
  gallery_size: int = GALLERY_SIZE,
  step: int | None = None,
  show_progress: bool = True,
  num_hints: int | None = None,
  hint_patch: int = 1,
  hint_seed: int = 0,
  hint_policy_name: str = "random",
) -> EvalResult:
  """Per-image metrics of the workdir's generator (latest checkpoint, or `step`) and of the
  baselines on `data`, resized to the model's training crop size as in training's evaluation.

  show_progress: a progress bar over the images (a summary line where stderr is not a terminal).
  num_hints: also colourise with this many hints sampled from each ground truth (a hint model
  only), beside the nearest-hint and luminance fills (`_predictors`).
  hint_policy_name: "error" also runs the simulated user (`hint_policy`): CIEDE2000 after 0..N
  points placed where the result is most wrong, beside the first k of the N random points.
  """
  if not os.path.isdir(workdir):
    raise EvaluationError(f"{workdir}: workdir does not exist")
  config, variables = checkpoint.restore_generator(workdir, step)  # NoCheckpointError: a UserError
  hint = None if num_hints is None else HintSampling(num_hints, hint_patch, hint_seed)
  if hint is not None:
    _check_hints(workdir, config, hint)
  data_name, config = _eval_config(config, data, batch_size, max_examples)
  mesh = parallel.make_mesh()
  variables = jax.device_put(variables, parallel.replicated(mesh))
  mean_ab, count = mean_chroma(config, mesh, data)
  generator = models.make_generator(config)
  predict = predict_fn(generator, config.color_space, mean_ab, mesh, hint)
  bar = progress.Progress(
    f"evaluate {data}", count, unit="images", enabled=show_progress and jax.process_index() == 0
  )
  with bar:
    values, thumbnails = _run(
      evaluator.Evaluator(predict, mesh), variables, config, gallery_size, bar
    )
  info = {
    "workdir": os.path.abspath(workdir),
    "step": checkpoint.latest_step(workdir) if step is None else step,
    "data": data,
    "data_name": data_name,
    "num_images": count,
    "crop_size": int(config.data.crop_size),
    "color_space": config.color_space,
    "mean_chroma_ab": [float(mean_ab[0]), float(mean_ab[1])],
    "mean_chroma_source": "mean ab of the evaluated images",
    "predictors": list(_predictors(hint)),
  }
  if hint is not None:
    info.update(hints=hint.count, hint_patch=hint.patch, hint_seed=hint.seed)
  curve = None
  if hint is not None and hint_policy_name == "error":
    user = hint_policy.SimulatedUser(generator, config.color_space, mesh)
    bar = progress.Progress(f"simulated user {data}", count, unit="images", enabled=show_progress)
    with bar:
      curve = user.curve(
        variables,
        _eval_batches(config),
        count=hint.count,
        patch=hint.patch,
        seed=hint.seed,
        bar=bar,
      )
    info.update(hint_policy="error", error_points_reach_random_at=curve.reached())
  return EvalResult(values, image_labels(config, count), thumbnails, tuple(mean_ab), info, curve)


def _check_hints(workdir: str, config: ml_collections.ConfigDict, hint: HintSampling) -> None:
  if not hints.enabled(config):
    raise EvaluationError(
      f"{workdir}: the model was trained without colour hints (config.model.hints=False); "
      "--hints needs one trained with them"
    )
  if hint.count < 0 or hint.patch < 1 or hint.patch % 2 == 0:
    raise EvaluationError(
      f"--hints {hint.count} --hint-patch {hint.patch}: need N >= 0 and an odd patch >= 1"
    )


def _eval_config(
  config: ml_collections.ConfigDict, data: str, batch_size: int | None, max_examples: int
) -> tuple[str, ml_collections.ConfigDict]:
  """(the data's short name, the training config set to read `data`'s eval split)."""
  data_name, overrides = data_overrides(data, config)
  batch = parallel.device_multiple(batch_size or DEFAULT_EVAL_BATCH)
  overrides.update({"batch_size": batch, "data.max_eval_examples": int(max_examples)})
  return data_name, config_lib.apply_overrides(config, overrides)


def _eval_batches(config: ml_collections.ConfigDict):
  """The eval split's padded batches; bad data is an EvaluationError."""
  from pix2pix_jax import input_pipeline  # TensorFlow: after cli.configure

  try:
    yield from input_pipeline.create_eval_iterator(config)
  except ValueError as e:
    raise EvaluationError(str(e)) from e


def mean_chroma(
  config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, data: str
) -> tuple[np.ndarray, int]:
  """(the mean ab of the evaluated images, their number): a first pass over them. The
  mean-chroma baseline is optimistic: it knows the evaluation set's average colour."""
  sums = jax.jit(common.mean_ab_sums, out_shardings=parallel.replicated(mesh))
  total = np.zeros(3)
  for host_batch in _eval_batches(config):
    global_batch = parallel.to_global(host_batch, mesh)
    total += np.asarray(jax.device_get(sums(global_batch["image"], global_batch["mask"])))
  if total[2] == 0:
    raise EvaluationError(f"--data {data}: no images to evaluate")
  return total[:2] / total[2], int(total[2])


def predict_fn(
  generator: Any,
  color_space: str,
  mean_ab: np.ndarray,
  mesh: jax.sharding.Mesh,
  hint: HintSampling | None = None,
) -> evaluator.PredictFn:
  """The command's `evaluator.PredictFn`: {predictor: sRGB in [0, 1]} (see `_predictors`)."""
  predict = jax.jit(
    functools.partial(_predictions, generator, color_space, hint),
    out_shardings=parallel.replicated(mesh),
    compiler_options=xla_flags.forward_compiler_options(),
  )
  return functools.partial(predict, jnp.asarray(mean_ab, jnp.float32))


def _predictions(generator, color_space, hint, mean_ab, variables, targets, first_index):
  model = common.predict_rgb(generator, color_space, variables, targets)
  outputs = {"model": model, **common.baselines(targets, mean_ab)}
  if hint is None:
    return outputs
  keys = hint_ops.image_keys(hint.seed, first_index, targets.shape[0])
  hinted = common.hinted_predictions(
    generator, color_space, variables, targets, keys, num_points=hint.count, patch=hint.patch
  )
  return {name: {**outputs, **hinted}[name] for name in _predictors(hint)}


def _run(
  evaluation: evaluator.Evaluator,
  variables: Any,
  config: ml_collections.ConfigDict,
  gallery_size: int,
  bar: progress.Progress,
) -> tuple[dict[str, dict[str, np.ndarray]], list[dict[str, bytes]]]:
  """(predictor -> metric -> [N], gallery thumbnails of the first `gallery_size` images)."""
  shown = jax.jit(_shown, out_shardings=parallel.replicated(evaluation.mesh))
  per_batch, thumbnails = [], []
  for result in evaluation.batches(variables, _eval_batches(config)):
    per_batch.append(result.values)
    real = np.flatnonzero(result.mask)[: gallery_size - len(thumbnails)]
    if len(real):
      pictures, targets = jax.device_get(shown(result.predictions, result.images))
      thumbnails.extend(_thumbnails(pictures, targets, real))
    bar.update(int(result.mask.sum()))
  return evaluator.concatenate(per_batch), thumbnails


def _shown(outputs: dict[str, jax.Array], targets: jax.Array) -> tuple[dict, jax.Array]:
  """The gallery's pictures: uint8 model output and gray input, and the targets."""
  return {name: color.float_to_uint8(outputs[name]) for name in ("model", "gray")}, targets


def _thumbnails(pictures: dict, targets: np.ndarray, indices: np.ndarray) -> list[dict]:
  return [
    {
      "input": _thumbnail(np.asarray(pictures["gray"][i])),
      "model": _thumbnail(np.asarray(pictures["model"][i])),
      "target": _thumbnail(np.asarray(targets[i])),
    }
    for i in indices
  ]


def _predictors(hint: HintSampling | None) -> tuple[str, ...]:
  """The model and the baselines: "gray" (L, a = b = 0), "mean_chroma" (L, the evaluated images'
  mean ab); with hints also "model_hints" (the model given them), "nearest_hint" (each pixel
  the ab of its nearest hint) and "luminance_fill" (`hint_ops.propagate`, the generator's
  starting point)."""
  if hint is None:
    return PREDICTORS
  return ("model", "model_hints", "gray", "mean_chroma", "nearest_hint", "luminance_fill")


def metric_names(result: EvalResult) -> list[str]:
  return list(result.values["model"])


def summary_json(result: EvalResult) -> dict[str, Any]:
  """The contents of metrics.json: run info, then mean and 95% CI per metric per predictor."""
  return {**result.info, **{p: metrics.summarize(v) for p, v in result.values.items()}}


def per_image_csv(result: EvalResult) -> str:
  """One row per image: index, file, then `<predictor>_<metric>` for every predictor."""
  columns = [(p, m) for p in result.values for m in metric_names(result)]
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["index", "file"] + [f"{p}_{m}" for p, m in columns])
  for i, label in enumerate(result.labels):
    writer.writerow([i, label] + [f"{result.values[p][m][i]:.6g}" for p, m in columns])
  return out.getvalue()


def write_outputs(result: EvalResult, output_dir: str) -> dict[str, str]:
  """Writes metrics.json, per_image.csv and gallery.html (each atomically); returns the paths."""
  from pix2pix_jax.evaluate import gallery

  paths = {
    "metrics": os.path.join(output_dir, "metrics.json"),
    "csv": os.path.join(output_dir, "per_image.csv"),
    "gallery": os.path.join(output_dir, "gallery.html"),
  }
  html = gallery.render(
    title=f"{result.info['workdir']} on {result.info['data']} (step {result.info['step']})",
    labels=result.labels,
    thumbnails=result.thumbnails,
    values=result.values["model"],
    summary=summary_json(result),
    predictors=tuple(result.values),
  )
  contents = {
    "metrics": json.dumps(summary_json(result), indent=2) + "\n",
    "csv": per_image_csv(result),
    "gallery": html,
  }
  if result.curve is not None:
    paths["curve"] = os.path.join(output_dir, "hint_curve.csv")
    paths["curve_plot"] = os.path.join(output_dir, "hint_curve.png")
    contents["curve"] = hint_policy.curve_csv(result.curve)
    contents["curve_plot"] = hint_policy.curve_png(result.curve)
  for name, path in paths.items():
    try:
      files.write_atomic(path, contents[name])
    except OSError as e:
      raise EvaluationError(f"{path}: cannot write ({files.describe_os_error(e)})") from e
  return paths


def format_summary(summary: dict[str, Any]) -> str:
  """A small text table of means and CIs: one row per metric, one column per predictor."""
  names = list(summary["model"])
  predictors = summary.get("predictors", PREDICTORS)
  lines = [f"{'metric':<18}" + "".join(f"{p:>26}" for p in predictors)]
  for name in names:
    cells = []
    for p in predictors:
      s = summary[p][name]
      cells.append(f"{s['mean']:>10.4g} [{s['ci95_low']:.4g}, {s['ci95_high']:.4g}]".rjust(26))
    lines.append(f"{name:<18}" + "".join(cells))
  return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="pix2pix-evaluate",
    description="Evaluate a trained workdir against gray and mean-chroma baselines.",
  )
  parser.add_argument("--workdir", required=True, help="training workdir (with checkpoints/)")
  what = parser.add_mutually_exclusive_group(required=True)
  what.add_argument("--data", help="'samples', an image folder, or a tfds name[split]")
  what.add_argument(
    "--video",
    nargs="+",
    metavar="CLIP",
    help="colour clips: turned gray, colourised with --hints N points sampled from the truth "
    "on each shot's first frame, measured per frame and per clip (docs/video.md)",
  )
  parser.add_argument("--output", help="output folder (default: WORKDIR/eval/<data name>/)")
  parser.add_argument("--batch-size", type=int, default=None, help="global eval batch size")
  parser.add_argument("--max-examples", type=int, default=-1, help="-1: every image")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument("--gallery-size", type=int, default=GALLERY_SIZE, help="images in gallery")
  parser.add_argument(
    "--hints",
    type=int,
    default=None,
    metavar="N",
    help="also evaluate with N colour hints sampled from each ground truth (a hint model), "
    "beside the nearest-hint fill",
  )
  parser.add_argument(
    "--hint-patch", type=int, default=1, help="each hint: the mean true ab of this odd square"
  )
  parser.add_argument("--hint-seed", type=int, default=0, help="seed of the sampled hints")
  parser.add_argument(
    "--hint-policy",
    choices=hint_policy.POLICIES,
    default="random",
    help="with --hints N: 'error' also simulates a user who puts each next point where the "
    "result is most wrong and writes CIEDE2000 after 1..N points beside random ones "
    "(hint_curve.csv, hint_curve.png)",
  )
  parser.add_argument(
    "--keyframe-every",
    type=int,
    default=None,
    metavar="K",
    help="--video: also sample hints every K frames within a shot",
  )
  parser.add_argument(
    "--hint-motion",
    choices=video_eval.MODES + ("all",),
    default="all",
    help="--video: hints held fixed, tracked, or fresh true hints on every frame (oracle)",
  )
  progress.add_quiet_flag(parser)
  cli.add_verbose_flag(parser)
  return parser


def main(argv: list[str] | None = None) -> int:
  """`pix2pix-evaluate`: metrics.json, per_image.csv and gallery.html for a workdir on data
  (with --video: the clip evaluation's files)."""
  parser = build_parser()
  args = parser.parse_args(argv)
  cli.configure(verbose=args.verbose)
  if args.video:
    return _evaluate_video(parser, args)
  if args.hint_policy == "error" and (args.hints is None or args.hints < 1):
    parser.error("--hint-policy error needs --hints N (N >= 1)")
  if args.hint_policy == "error" and jax.process_count() > 1:
    parser.error("--hint-policy error runs in one process")
  result = evaluate_workdir(
    args.workdir,
    args.data,
    batch_size=args.batch_size,
    max_examples=args.max_examples,
    gallery_size=args.gallery_size,
    step=args.step,
    show_progress=not args.quiet,
    num_hints=args.hints,
    hint_patch=args.hint_patch,
    hint_seed=args.hint_seed,
    hint_policy_name=args.hint_policy,
  )
  name = result.info["data_name"] + ("" if args.hints is None else f"_hints{args.hints}")
  output = args.output or os.path.join(args.workdir, "eval", name)
  paths = write_outputs(result, output)
  print(format_summary(summary_json(result)))
  if result.curve is not None:
    print(hint_policy.format_curve(result.curve))
  for path in paths.values():
    print(f"wrote {path}")
  return 0


def _evaluate_video(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
  if args.hints is None or args.hints < 1:
    parser.error("--video needs --hints N (N >= 1)")
  if args.hint_policy != "random":
    parser.error("--hint-policy error is for --data, not --video")
  if args.keyframe_every is not None and args.keyframe_every < 1:
    parser.error("--keyframe-every must be >= 1")
  settings = video_eval.Settings(
    hints=args.hints,
    keyframe_every=args.keyframe_every,
    modes=video_eval.MODES if args.hint_motion == "all" else (args.hint_motion,),
    seed=args.hint_seed,
  )
  colorizer = colorizer_lib.Colorizer.from_workdir(args.workdir, step=args.step)
  output = args.output or os.path.join(args.workdir, "eval", f"video_hints{args.hints}")
  summary = video_eval.evaluate_clips(colorizer, args.video, settings, output)
  print(video_eval.format_summary(summary))
  print(f"wrote {output}/ (per_frame.csv, per_clip.csv, summary.json, ciede2000_distance.png)")
  return 0


def run() -> None:
  """Console entry point (pix2pix-evaluate)."""
  cli.run(main)


if __name__ == "__main__":
  run()
