"""Keyframe hints carried through their shots by dense optical flow on the luminance at a reduced
size, on the host with OpenCV: a `Track` holds the hint points' positions per frame, and splats
them into full-size `Hints` only when a frame asks."""

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from pix2pix_jax.hints import files, keyframes

DEFAULT_MAX_SIDE = 256  # the reduced size's longest side


@dataclasses.dataclass(frozen=True)
class Options:
  """How hint points move and when they are dropped; distances in pixels at the reduced size.
  Chosen on tests/track_test.py's synthetic clips (docs/video.md)."""

  # Forward-backward: drop a point that the flow to the next frame and back does not return
  # to within this distance (occluded, or the flow there is unreliable).
  consistency: float = 0.5
  # A point's position is matched from its anchor frame directly (no drift from chaining
  # frame-to-frame flows) where that and the frame-to-frame step agree within `agreement`;
  # else the step is taken, and beyond `disagreement` the point is dropped (an occluder drags
  # the points ahead of it). Dropping at `agreement` already lost 30% of the points in flat sky
  # on a slow zoom (experiments/hint_motion.py).
  agreement: float = 0.5
  disagreement: float = 2.0
  # Drop a point closer than this to the frame's edge once it has moved (flow is poor there).
  margin: float = 2.0
  # Drop a point whose 5x5 neighbourhood at the anchor and now differ by more than this (mean
  # absolute difference of the zero-mean patches over their mean texture): it is covered.
  appearance: float = 1.0
  # Frames between anchors: the keyframe, then every this many frames (appearance changes), or
  # sooner once the points have moved this far from the anchor (the median; a direct match
  # over a long way is less accurate than the frame-to-frame step).
  anchor_every: int = 30
  anchor_shift: float = 6.0
  # A point whose 5x5 neighbourhood varies by less than this (mean absolute deviation, levels)
  # is flat: the flow there is filled in from around it, so the forward-backward and
  # disagreement checks say little; it is dropped only when the mean luminance around it
  # changes by over `flat_levels` (covered). On real clips, most points dropped before this
  # rule were flat ones failing the disagreement check (experiments/hint_motion.py). They still
  # move with that filled-in flow: a wall's hints drift with an object crossing in front
  # (moving them by the frame's median flow instead measured worse on every real clip).
  flat_texture: float = 3.0
  flat_levels: float = 8.0
  # Under a still camera (the frame's median flow, summed from the keyframe, within `still` px)
  # a dropped point comes back, at its keyframe position or else where it was last kept, once
  # the picture there is still (the flow under `consistency`) and looks as around it on the
  # keyframe again (within half `appearance`, the mean luminance within `flat_levels`):
  # something passed in front of it. Dropped for good, such points cost a still-camera clip
  # 10% (vtest, experiments/hint_motion.py); negative: never.
  still: float = 1.0
  # Between two keyframes of a shot a frame takes both's hints (the nearer's on top), else only
  # the nearer's: more true points gave a lower error on every real clip measured.
  blend: bool = True


_PATCH = np.stack(np.meshgrid(np.arange(-2, 3), np.arange(-2, 3)), axis=-1).reshape(-1, 2)
_FLAT = 2.0  # luminance levels: texture weaker than this counts as flat in `_changed`
_GRAY = np.array([0.3, 0.59, 0.11], np.float32)  # the model's grayscale (color.rgb_to_gray)

# Dense optical flow: (luminance a, luminance b), uint8 [h, w] -> float32 [h, w, 2], per pixel of
# a the (dx, dy) to where its content is in b.
Flow = Callable[[np.ndarray, np.ndarray], np.ndarray]


def dis_flow() -> Flow:
  """OpenCV's DIS optical flow (medium preset): the default."""
  import cv2  # noqa: PLC0415 (OpenCV only where hints are tracked)

  dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
  return lambda a, b: dis.calc(a, b, None)


def farneback_flow() -> Flow:
  """OpenCV's Farnebäck optical flow (3 levels, 15 px windows)."""
  import cv2  # noqa: PLC0415

  return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def model_gray(frames: np.ndarray) -> np.ndarray:
  """uint8 RGB [..., 3] -> the model's gray of each pixel, uint8, as 3 equal channels."""
  gray = np.clip(np.rint(frames.astype(np.float32) @ _GRAY), 0, 255).astype(np.uint8)
  return np.repeat(gray[..., None], 3, axis=-1)


def reduced_size(height: int, width: int, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
  """(h, w) of a height x width frame with its longest side at most `max_side`."""
  scale = min(1.0, max_side / max(height, width))
  return max(1, round(height * scale)), max(1, round(width * scale))


def small_luma(frames: np.ndarray, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
  """Frames uint8 [n, H, W, 3] -> their luminance uint8 [n, h, w] at `reduced_size` (area
  averaging): the first pass's input to `track`."""
  import cv2  # noqa: PLC0415

  h, w = reduced_size(frames.shape[1], frames.shape[2], max_side)
  out = np.empty((frames.shape[0], h, w), np.uint8)
  for i, frame in enumerate(frames):
    small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    out[i] = np.clip(np.rint(small @ _GRAY), 0, 255).astype(np.uint8)
  return out


@dataclasses.dataclass(frozen=True)
class _Run:
  """One keyframe's hints over the frames that take them. Its hint pixels are grouped into seeds
  (one per reduced-size pixel they fall in); a pixel moves with its seed."""

  first: int  # the first frame that takes these hints
  pixels: np.ndarray  # int32 [m, 2]: (y, x) of the keyframe's hint pixels at full size
  ab: np.ndarray  # float32 [m, 2]: their ab
  seed_of: np.ndarray  # int32 [m]: the seed each pixel moves with
  xy: np.ndarray  # float32 [frames, n, 2]: seeds' (x, y) at the reduced size; NaN once dropped
  start: np.ndarray  # float32 [n, 2]: seeds' (x, y) on the keyframe


@dataclasses.dataclass(frozen=True)
class Track:
  """The hints carried to each frame of a clip: runs of seed positions, up to two runs a frame
  (`runs_of[t]`, -1: none), splatted to full-size `Hints` by `hints(t)`."""

  runs: tuple[_Run, ...]
  runs_of: np.ndarray  # int32 [frames, 2]: the nearer keyframe's run, then the other's (blend)
  frame_size: tuple[int, int]  # (H, W)
  small_size: tuple[int, int]  # (h, w)

  def __len__(self) -> int:
    return len(self.runs_of)

  def _kept(self, t: int) -> list[tuple[_Run, np.ndarray, np.ndarray]]:
    """Frame t's runs (the nearer keyframe's last), their seeds' positions there and which
    seeds are kept; empty: no hints."""
    out = []
    for r in self.runs_of[t][::-1]:
      if r >= 0:
        run = self.runs[r]
        xy = run.xy[t - run.first]
        kept = ~np.isnan(xy[:, 0])
        if kept.any():
          out.append((run, xy, kept))
    return out

  def positions(self, t: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Frame t's kept seeds at the reduced size: (their (x, y) on the keyframe, their (x, y) at
    t), float32 [k, 2] each; None where no hints apply."""
    found = self._kept(t)
    if not found:
      return None
    starts, xys = zip(*[(run.start[kept], xy[kept]) for run, xy, kept in found], strict=True)
    return np.concatenate(starts), np.concatenate(xys)

  def points(self, t: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Frame t's hint pixels at full frame size: ((y, x) int64 [k, 2], ab float32 [k, 2]),
    each kept hint pixel of its keyframe moved by its seed's motion (scaled to full size), one
    pixel each (where two land on one pixel, the later one: the nearer keyframe's); None where
    no hints apply."""
    height, width = self.frame_size
    scale = np.array([self.small_size[0] / height, self.small_size[1] / width])
    yxs, abs_ = [], []
    for run, xy, kept in self._kept(t):
      moved = (xy - run.start)[:, ::-1] / scale  # per seed, (dy, dx) at full size
      alive = kept[run.seed_of]
      yxs.append(np.rint(run.pixels[alive] + moved[run.seed_of[alive]]).astype(np.int64))
      abs_.append(run.ab[alive])
    if not yxs:
      return None
    yx, ab = np.concatenate(yxs), np.concatenate(abs_)
    inside = (yx >= 0).all(axis=1) & (yx[:, 0] < height) & (yx[:, 1] < width)
    yx, ab = yx[inside], ab[inside]
    if not len(yx):
      return None
    # The last of the pixels that land on one place, as `hints` writes them.
    flat = yx[:, 0] * width + yx[:, 1]
    _, last = np.unique(flat[::-1], return_index=True)
    keep = np.sort(len(flat) - 1 - last)
    return yx[keep], ab[keep]

  def hints(self, t: int) -> files.Hints | None:
    """Frame t's `points` as full-size `Hints`; None where no hints apply."""
    found = self.points(t)
    if found is None:
      return None
    yx, ab = found
    mask = np.zeros(self.frame_size, bool)
    out = np.zeros(self.frame_size + (2,), np.float32)
    mask[yx[:, 0], yx[:, 1]] = True
    out[yx[:, 0], yx[:, 1]] = ab
    return files.Hints(out, mask)


def _seeds(hints: files.Hints, small_size: tuple[int, int]) -> tuple[np.ndarray, ...]:
  """A keyframe's hint pixels (y, x), their ab, the seed of each and the seeds' (x, y) at the
  reduced size (the mean of their pixels' centres mapped there)."""
  ys, xs = np.nonzero(hints.mask)
  (height, width), (h, w) = hints.shape, small_size
  sy, sx = (ys + 0.5) * (h / height), (xs + 0.5) * (w / width)
  cell = np.minimum(sy.astype(np.int64), h - 1) * w + np.minimum(sx.astype(np.int64), w - 1)
  _, seed_of, counts = np.unique(cell, return_inverse=True, return_counts=True)
  start = np.stack(
    [np.bincount(seed_of, sx - 0.5) / counts, np.bincount(seed_of, sy - 0.5) / counts], axis=1
  )
  pixels = np.stack([ys, xs], axis=1).astype(np.int32)
  return pixels, hints.ab[ys, xs].astype(np.float32), seed_of.astype(np.int32), start


def _sample(field: np.ndarray, xy: np.ndarray) -> np.ndarray:
  """A field [h, w, c] (a flow, an image) at points (x, y) [n, 2]: bilinear, clamped."""
  h, w = field.shape[:2]
  x, y = np.clip(xy[:, 0], 0, w - 1), np.clip(xy[:, 1], 0, h - 1)
  x0, y0 = (
    np.minimum(x.astype(np.int64), w - 2).clip(0),
    np.minimum(y.astype(np.int64), h - 2).clip(0),
  )
  x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
  fx, fy = (x - x0)[:, None], (y - y0)[:, None]
  top = field[y0, x0] * (1 - fx) + field[y0, x1] * fx
  bottom = field[y1, x0] * (1 - fx) + field[y1, x1] * fx
  return top * (1 - fy) + bottom * fy


def _inside(xy: np.ndarray, shape: tuple[int, int], margin: float) -> np.ndarray:
  h, w = shape
  x, y = xy[:, 0], xy[:, 1]
  return (
    (x >= margin - 0.5) & (y >= margin - 0.5) & (x <= w - 0.5 - margin) & (y <= h - 0.5 - margin)
  )


def _patches(luma: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Zero-mean 5x5 luminance patches [n, 25] around points (x, y) [n, 2], bilinear, and their
  means [n]."""
  points = (xy[:, None, :] + _PATCH[None]).reshape(-1, 2)
  values = _sample(luma.astype(np.float32)[..., None], points)[:, 0].reshape(len(xy), -1)
  means = values.mean(axis=1)
  return values - means[:, None], means


def _changed(a: np.ndarray, p: np.ndarray, b: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, ...]:
  """How much the neighbourhood of points p on a changes at q on b, relative to its texture;
  the change of its mean; its texture on a."""
  (pa, ma), (pb, mb) = _patches(a, p), _patches(b, q)
  texture_a = np.abs(pa).mean(axis=1)
  texture = 0.5 * (texture_a + np.abs(pb).mean(axis=1))
  return np.abs(pa - pb).mean(axis=1) / (texture + _FLAT), np.abs(ma - mb), texture_a


class _Anchor(NamedTuple):
  """The frame points are matched from: its luminance and their positions on it."""

  luma: np.ndarray
  xy: np.ndarray


def _step(
  xy: np.ndarray,
  home: np.ndarray,
  anchors: Sequence[_Anchor],
  which: np.ndarray,
  a: np.ndarray,
  b: np.ndarray,
  flow: Flow,
  options: Options,
) -> tuple[np.ndarray, np.ndarray]:
  """Points' positions on luminance a -> on b, each matched from its anchor (`anchors[which]`);
  NaN (dropped) where `Options` says (`home`: their positions on the keyframe); and the flow
  from a to b."""
  out = np.full_like(xy, np.nan)
  alive = ~np.isnan(xy[:, 0])
  forward = flow(a, b)
  if not alive.any():
    return out, forward
  p, groups = xy[alive], [(anchor, which[alive] == g) for g, anchor in enumerate(anchors)]
  moved = p + _sample(forward, p)
  back = moved + _sample(flow(b, a), moved)
  direct = moved.copy()
  for anchor, rows in groups:
    if rows.any() and anchor.luma is not a:
      q = anchor.xy[alive][rows]
      direct[rows] = q + _sample(flow(anchor.luma, b), q)
  # The direct match from the anchor where it agrees with the step (no drift); else the step
  # (where the picture is flat the direct match over a long way is the less reliable one).
  agree = np.linalg.norm(direct - moved, axis=1) <= options.agreement
  matched = np.where(agree[:, None], direct, moved)
  # Near the edge only points that move are dropped: a still camera keeps them.
  near_edge = ~_inside(matched, a.shape, options.margin)
  near_edge &= np.linalg.norm(matched - home[alive], axis=1) > options.consistency
  change, mean_change, texture = np.zeros((3, len(p)))
  for anchor, rows in groups:
    if rows.any():
      found = _changed(anchor.luma, anchor.xy[alive][rows], b, matched[rows])
      change[rows], mean_change[rows], texture[rows] = found
  flat = texture < options.flat_texture
  flow_ok = (np.linalg.norm(back - p, axis=1) <= options.consistency) & (
    np.linalg.norm(direct - moved, axis=1) <= options.disagreement
  )
  ok = (
    _inside(matched, a.shape, 0.0)
    & ~near_edge
    & (change <= options.appearance)
    & np.where(flat, mean_change <= options.flat_levels, flow_ok)
  )
  out[np.flatnonzero(alive)[ok]] = matched[ok]
  return out, forward


def _revive(
  xy: np.ndarray,
  last: np.ndarray,
  key: _Anchor,
  b: np.ndarray,
  forward: np.ndarray,
  options: Options,
) -> np.ndarray:
  """Brings back, in place, the dropped points of xy where the picture on b is still
  (`forward`: the flow from the frame before) and looks as on the keyframe again: at their
  keyframe positions (`key`), else where they were last kept (`last`). Returns the indices of
  those that came back."""
  dropped = dead = np.flatnonzero(np.isnan(xy[:, 0]))
  for q in (key.xy, last):  # the keyframe's first: `last` may be dragged by what covered them
    if len(dead):
      still = np.linalg.norm(_sample(forward, q[dead]), axis=1) <= options.consistency
      change, mean_change, _ = _changed(key.luma, key.xy[dead], b, q[dead])
      back = still & (change <= 0.5 * options.appearance) & (mean_change <= options.flat_levels)
      xy[dead[back]] = q[dead[back]]
      dead = dead[~back]
  return np.setdiff1d(dropped, dead)


def _serves(
  key_frames: list[int], shot_start: int, shot_end: int, blend: bool = False
) -> list[tuple[int, int]]:
  """The frames [lo, hi] each of a shot's sorted keyframes gives hints to: the nearer keyframe's
  (the earlier one on a tie), or with `blend` every frame short of the neighbouring keyframes; the
  first keyframe back to the shot's start, the last to its end."""
  if blend:
    los = [shot_start] + [f + 1 for f in key_frames[:-1]]
    return list(zip(los, [f - 1 for f in key_frames[1:]] + [shot_end], strict=True))
  bounds = [(a + b) // 2 for a, b in zip(key_frames[:-1], key_frames[1:], strict=True)]
  los = [shot_start] + [m + 1 for m in bounds]
  his = bounds + [shot_end]
  return list(zip(los, his, strict=True))


def _run(
  luma: Sequence[np.ndarray],
  keyframe: keyframes.Keyframe,
  span: tuple[int, int],
  small_size: tuple[int, int],
  flow: Flow | None,
  options: Options,
) -> _Run:
  """One keyframe's seeds moved frame by frame forward to span's end and back to its start
  (`flow` None: they stay where they are)."""
  lo, hi = span
  pixels, ab, seed_of, start = _seeds(keyframe.hints, small_size)
  if flow is None:
    xy = np.broadcast_to(start.astype(np.float32), (hi - lo + 1,) + start.shape)
    return _Run(lo, pixels, ab, seed_of, xy, start.astype(np.float32))
  xy = np.full((hi - lo + 1, len(start), 2), np.nan, np.float32)
  k = keyframe.frame
  xy[k - lo] = start
  key = _Anchor(_luma(luma, k), start.astype(np.float32))
  for step, end in ((1, hi), (-1, lo)):
    b, anchor, last = key.luma, key, key.xy.copy()
    which = np.zeros(len(start), np.int64)  # each point's anchor: 0 `anchor`, 1 the keyframe
    camera = np.zeros(2)  # the median flow summed from the keyframe
    for t in range(k, end, step):
      a, b = b, _luma(luma, t + step)
      if (t - k) % options.anchor_every == 0 or _far(xy[t - lo], anchor.xy, options):
        anchor, which[:] = _Anchor(a, xy[t - lo]), 0
      moved, forward = _step(xy[t - lo], start, (anchor, key), which, a, b, flow, options)
      camera += np.median(forward.reshape(-1, 2), axis=0)
      if np.linalg.norm(camera) <= options.still:
        # Matched from the keyframe: they have no position on the anchor.
        which[_revive(moved, last, key, b, forward, options)] = 1
      kept = ~np.isnan(moved[:, 0])
      last[kept] = moved[kept]
      xy[t + step - lo] = moved
  return _Run(lo, pixels, ab, seed_of, xy, start.astype(np.float32))


def _far(xy: np.ndarray, anchor_xy: np.ndarray, options: Options) -> bool:
  """Whether the kept points have moved more than `anchor_shift` (median) from the anchor."""
  shift = np.linalg.norm(xy - anchor_xy, axis=1)
  shift = shift[~np.isnan(shift)]
  return bool(len(shift)) and float(np.median(shift)) > options.anchor_shift


def _luma(luma: Sequence[np.ndarray], t: int) -> np.ndarray:
  return np.ascontiguousarray(luma[t], np.uint8)


def track(
  luma: Sequence[np.ndarray],
  keys: Sequence[keyframes.Keyframe],
  cuts: Sequence[bool],
  *,
  flow: Flow | None = None,
  options: Options = Options(),
  still: bool = False,
) -> Track:
  """Carries each keyframe's hints through its shot. `luma`: the clip's luminance at a reduced
  size, uint8 [T, h, w] (`small_luma`; any indexable sequence, e.g. a memmap); `keys`: keyframes
  at full frame size; `cuts[t]`: frame t starts a shot. A frame between two keyframes of its shot
  takes both's hints, the nearer's on top (`Options.blend`; else only the nearer's), a frame
  before the first or after the last that one's; hints never cross a cut. `flow`: `dis_flow()`
  unless given; `still`: the hints stay at their keyframe positions (`--hint-motion fixed`)."""
  cuts = np.asarray(cuts, bool)
  if len(cuts) != len(luma):
    raise ValueError(f"{len(cuts)} cut flags for {len(luma)} frames")
  if not keys:
    raise ValueError("no keyframes")
  small_size = tuple(np.shape(luma[0]))
  frame_size = keys[0].hints.shape
  flow = None if still else (flow or dis_flow())
  shot = np.cumsum(cuts) - cuts[0]  # shot index of each frame
  starts = np.flatnonzero(np.r_[True, cuts[1:]])
  ends = np.r_[starts[1:] - 1, len(cuts) - 1]
  runs_of = np.full((len(cuts), 2), -1, np.int32)
  runs = []
  by_shot: dict[int, list[keyframes.Keyframe]] = {}
  for key in sorted(keys, key=lambda k: k.frame):
    if not 0 <= key.frame < len(cuts) or key.hints.shape != frame_size:
      raise ValueError(f"keyframe at frame {key.frame} does not fit the clip")
    if any(k.frame == key.frame for k in by_shot.get(int(shot[key.frame]), ())):
      raise ValueError(f"two keyframes at frame {key.frame}")
    by_shot.setdefault(int(shot[key.frame]), []).append(key)
  for s, shot_keys in by_shot.items():
    frames = [k.frame for k in shot_keys]
    nearer = _serves(frames, starts[s], ends[s])
    spans = _serves(frames, starts[s], ends[s], options.blend)
    for key, (lo, hi), (near_lo, near_hi) in zip(shot_keys, spans, nearer, strict=True):
      frames_served = np.arange(lo, hi + 1)
      is_near = (frames_served >= near_lo) & (frames_served <= near_hi)
      runs_of[frames_served[is_near], 0] = len(runs)
      runs_of[frames_served[~is_near], 1] = len(runs)
      runs.append(_run(luma, key, (lo, hi), small_size, flow, options))
  return Track(tuple(runs), runs_of, frame_size, small_size)
