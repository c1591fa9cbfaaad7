"""`pix2pix-evaluate --hints N --hint-policy error`: a simulated user who puts each next colour
point where the result is most wrong, with its true colour, beside `--hints`' random points; the
CIEDE2000 after 0..N points of each (docs/video.md, "A simulated user")."""

import csv
import dataclasses
import functools
import io
from collections.abc import Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from pix2pix_jax import color, metrics, parallel, progress
from pix2pix_jax.evaluate import common
from pix2pix_jax.hints import device as hint_ops

POLICIES = ("random", "error")
_EIGHT_NEIGHBOURS = np.ones((3, 3), bool)


@dataclasses.dataclass(frozen=True)
class ErrorPolicy:
  """Where the simulated user looks: the pixels whose CIEDE2000 (blurred by a Gaussian of
  `blur` px) is above the image's `percentile` and at least `min_error`, grouped into
  8-connected regions of one true colour (ab in the same `colour_step` square; 0: any colour);
  the next point goes to the region with the most `weight` ("area": pixels, "mass": summed
  error), at its pixel farthest from the region's edge ("inside") or the pixel of it nearest its
  centroid ("centroid"). Pixels within `spacing` px of an earlier point are not wrong. The
  defaults: docs/video.md, "A simulated user"."""

  percentile: float = 80.0
  min_error: float = 0.0
  blur: float = 0.0
  weight: str = "area"
  centre: str = "inside"
  spacing: float = 0.0
  colour_step: float = 10.0


def next_point(
  error: np.ndarray,
  hinted: np.ndarray | None = None,
  true_ab: np.ndarray | None = None,
  policy: ErrorPolicy = ErrorPolicy(),
) -> tuple[int, int]:
  """(y, x) of the next point on an image whose per-pixel CIEDE2000 is `error` [H, W] and whose
  earlier points cover `hinted` [H, W] (bool): the centre of its largest error region
  (`ErrorPolicy`), always a pixel of that region."""
  if policy.blur > 0:
    error = ndimage.gaussian_filter(error, policy.blur, mode="nearest")
  wrong = error > max(np.percentile(error, policy.percentile), policy.min_error)
  if hinted is not None and hinted.any():
    wrong &= ndimage.distance_transform_edt(~hinted) > policy.spacing
  if not wrong.any():  # none above the threshold (a flat top, or all near points): the worst
    wrong = error >= error.max()
  labels = _regions(wrong, true_ab, policy.colour_step)
  weights = np.where(wrong, 1.0 if policy.weight == "area" else error, 0.0)
  region = labels == 1 + np.argmax(np.bincount(labels.ravel(), weights.ravel())[1:])
  if policy.centre == "inside":
    # Padded: the image's border is an edge of the region, as a user sees it.
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    return tuple(int(v) for v in np.unravel_index(np.argmax(depth), depth.shape))
  ys, xs = np.nonzero(region)
  nearest = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
  return int(ys[nearest]), int(xs[nearest])


def _regions(wrong: np.ndarray, true_ab: np.ndarray | None, step: float) -> np.ndarray:
  """Labels of the 8-connected regions of `wrong` whose true ab fall in one `step` square."""
  if not step or true_ab is None:
    return ndimage.label(wrong, structure=_EIGHT_NEIGHBOURS)[0]
  bins = np.floor(true_ab / step).astype(np.int64)
  key = bins[..., 0] * 10_000 + bins[..., 1]
  labels, total = np.zeros(wrong.shape, np.int64), 0
  for value in np.unique(key[wrong]):
    part, n = ndimage.label(wrong & (key == value), structure=_EIGHT_NEIGHBOURS)
    labels[part > 0] = part[part > 0] + total
    total += n
  return labels


def random_places(keys: jax.Array, height: int, width: int, count: int) -> np.ndarray:
  """The places of `hint_ops.sample_points`' `count` points in each image (one key each), in its
  order: [B, count, 2] (y, x)."""
  y, x = hint_ops.sample_places(keys, height, width, count)
  return np.asarray(jax.device_get(jnp.stack([y, x], -1)))


class _Hints:
  """Points added one at a time to a batch, each revealing the mean true ab of the `patch`
  square around it (clipped at the border), overlaps averaged: `sample_points`' hints."""

  def __init__(self, true_ab: np.ndarray, patch: int):
    self.true_ab, self.half = true_ab, patch // 2
    self.sums = np.zeros(true_ab.shape, np.float32)
    self.cover = np.zeros(true_ab.shape[:-1], np.float32)

  def add(self, image: int, y: int, x: int) -> None:
    h = self.half
    square = (image, slice(max(y - h, 0), y + h + 1), slice(max(x - h, 0), x + h + 1))
    self.sums[square] += self.true_ab[square].mean(axis=(0, 1))
    self.cover[square] += 1

  def arrays(self) -> dict[str, np.ndarray]:
    return {"ab": self.sums / np.maximum(self.cover, 1)[..., None], "mask": self.cover > 0}


def _errors(generator, color_space, variables, images, hints):
  """The hint generator's per-pixel CIEDE2000 [B, H, W] on uint8 `images` given `hints`."""
  channels = hint_ops.encode(hints["ab"], hints["mask"])
  predicted = common.predict_rgb(generator, color_space, variables, images, channels)
  truth = color.rgb_to_lab(color.uint8_to_float(images))
  return metrics.ciede2000_lab(color.rgb_to_lab(predicted), truth)


@dataclasses.dataclass
class HintCurve:
  """Mean CIEDE2000 per image after k = 0..N points of each policy, and the error policy's
  points."""

  per_image: dict[str, np.ndarray]  # policy -> [images, N + 1]
  points: np.ndarray  # [images, N, 2] (y, x) of the error policy, in order

  @property
  def count(self) -> int:
    return self.points.shape[1]

  def mean(self, policy: str) -> np.ndarray:
    return self.per_image[policy].mean(axis=0)

  def reached(self) -> int | None:
    """The fewest error-policy points whose CIEDE2000 is at most that of N random points."""
    hits = np.flatnonzero(self.mean("error") <= self.mean("random")[-1])
    return int(hits[0]) if len(hits) else None


class SimulatedUser:
  """Colourises eval batches point by point; one compiled generator call per batch shape."""

  def __init__(self, generator: nn.Module, color_space: str, mesh: jax.sharding.Mesh):
    self.mesh = mesh
    self._errors = jax.jit(
      functools.partial(_errors, generator, color_space), out_shardings=parallel.replicated(mesh)
    )

  def curve(
    self,
    variables: Any,
    batches: Iterable[dict[str, np.ndarray]],
    *,
    count: int,
    patch: int = 1,
    seed: int = 0,
    policy: ErrorPolicy = ErrorPolicy(),
    bar: progress.Progress | None = None,
  ) -> HintCurve:
    """Each real image of the padded eval `batches` (one process) after 0..count points of
    each policy: "random" takes the first k of `--hints count`'s seeded points, "error" puts
    each next one at `next_point` of the current error."""
    variables = jax.device_put(variables, parallel.replicated(self.mesh))
    per_image, points, first_index = {p: [] for p in POLICIES}, [], 0
    for batch in batches:
      real = np.asarray(batch["mask"], bool)
      images = parallel.to_global({"image": batch["image"]}, self.mesh)["image"]
      true_ab = np.asarray(color.rgb_to_lab(color.uint8_to_float(batch["image"])))[..., 1:]
      b, h, w = true_ab.shape[:3]
      keys = hint_ops.image_keys(seed, jnp.int32(first_index), b)
      first_index += b
      places = {"random": random_places(keys, h, w, count), "error": np.zeros((b, count, 2), int)}
      for name in POLICIES:
        hints, means = _Hints(true_ab, patch), []
        for k in range(count + 1):
          hinted = parallel.to_global(hints.arrays(), self.mesh)
          error = np.asarray(jax.device_get(self._errors(variables, images, hinted)))
          means.append(error.mean(axis=(1, 2)))
          if k == count:
            break
          for i in np.flatnonzero(real):
            if name == "error":
              places[name][i, k] = next_point(error[i], hints.cover[i] > 0, true_ab[i], policy)
            hints.add(i, *places[name][i, k])
        per_image[name].append(np.stack(means, axis=1)[real])
      points.append(places["error"][real])
      if bar is not None:
        bar.update(int(real.sum()))
    return HintCurve({p: np.concatenate(v) for p, v in per_image.items()}, np.concatenate(points))


def curve_csv(curve: HintCurve) -> str:
  """hint_curve.csv: k, policy, the mean CIEDE2000 over the images after k points."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["k", "policy", "ciede2000"])
  for name in POLICIES:
    for k, value in enumerate(curve.mean(name)):
      writer.writerow([k, name, f"{value:.6g}"])
  return out.getvalue()


def curve_png(curve: HintCurve) -> bytes:
  """hint_curve.png: both curves and the level of N random points."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(6, 4))
  ks = np.arange(curve.count + 1)
  for name, style in zip(POLICIES, ("o-", "s-"), strict=True):
    ax.plot(ks, curve.mean(name), style, markersize=3, label=f"{name} points")
  ax.axhline(curve.mean("random")[-1], color="gray", linestyle=":", label=f"{curve.count} random")
  ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  ax.set_xlabel("points given")
  ax.set_ylabel("CIEDE2000 (lower is better)")
  ax.set_title(f"a simulated user, {len(curve.points)} images")
  ax.legend(fontsize=8)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  return buffer.getvalue()


def format_curve(curve: HintCurve) -> str:
  """The printed curve: one line per k, then where the error policy reaches N random points."""
  random, error = curve.mean("random"), curve.mean("error")
  lines = [f"CIEDE2000 after k points, mean of {len(curve.points)} images", "  k   random    error"]
  lines += [
    f"{k:>3} {r:>8.3f} {e:>8.3f}" for k, (r, e) in enumerate(zip(random, error, strict=True))
  ]
  reached = curve.reached()
  lines.append(
    f"error points reach {curve.count} random points' {random[-1]:.3f} at k = {reached}"
    if reached is not None
    else f"error points do not reach {curve.count} random points' {random[-1]:.3f}"
  )
  return "\n".join(lines)
