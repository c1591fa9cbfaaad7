"""Per-frame and per-clip metrics of a colourised clip against its true colours: CIEDE2000 and
PSNR per frame, CDC (colour distribution consistency) and warp error per clip."""

import numpy as np

from pix2pix_jax import color, metrics

CDC_STEPS = (1, 2, 4)  # frame distances whose histogram divergences CDC averages
_CDC_BINS = 32
_BATCH = 8


def frame_metrics(frames: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
  """uint8 [T, H, W, 3] against the truth: {"ciede2000", "psnr"}, each float [T]."""
  out: dict[str, list[np.ndarray]] = {"ciede2000": [], "psnr": []}
  for i in range(0, len(frames), _BATCH):
    pred = color.uint8_to_float(frames[i : i + _BATCH])
    real = color.uint8_to_float(truth[i : i + _BATCH])
    out["ciede2000"].append(np.asarray(metrics.ciede2000(pred, real)))
    out["psnr"].append(np.asarray(metrics.psnr(pred, real)))
  return {name: np.concatenate(values) for name, values in out.items()}


def _histograms(frames: np.ndarray) -> np.ndarray:
  """Normalised per-channel histograms [T, 3, bins] of uint8 RGB frames."""
  shift = 8 - int(np.log2(_CDC_BINS))  # a bin is 256 / bins levels wide
  offsets = (np.arange(3) * _CDC_BINS).astype(np.uint16)  # channel c: bins c*B .. c*B+B-1
  counts = np.stack(
    [np.bincount(((frame >> shift) + offsets).ravel(), minlength=3 * _CDC_BINS) for frame in frames]
  )
  counts = counts.reshape(len(frames), 3, _CDC_BINS).astype(np.float64)
  return counts / counts.sum(axis=-1, keepdims=True)


def _js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
  """Jensen-Shannon divergence (natural log) over the last axis."""
  m = 0.5 * (p + q)

  def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ratio = np.where(a > 0, a / np.where(b > 0, b, 1.0), 1.0)
    return np.sum(np.where(a > 0, a * np.log(ratio), 0.0), axis=-1)

  return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def cdc(frames: np.ndarray) -> float:
  """Colour distribution consistency (as ColorMNet's evaluation): the Jensen-Shannon divergence
  of the RGB histograms (per channel, averaged) of frames t and t+k, averaged over t and over k
  in CDC_STEPS. Lower is steadier; NaN for a clip shorter than 2 frames."""
  hist = _histograms(frames)
  values = [_js_divergence(hist[:-k], hist[k:]).mean() for k in CDC_STEPS if len(frames) > k]
  return float(np.mean(values)) if values else float("nan")


def true_flows(truth: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
  """For each t, (the flow from frame t to t+1 as float16 [H, W, 2] of (dx, dy), valid mask
  [H, W]): DIS flow on the true frames' luminance, a pixel valid where the flow back returns it
  within 1 px and it stays in the frame. (float16: half the memory; 1/16 px at 100 px.)"""
  import cv2  # noqa: PLC0415

  dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
  gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in truth]
  h, w = gray[0].shape
  grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).astype(np.float32)
  flows = []
  for a, b in zip(gray[:-1], gray[1:], strict=True):
    forward, backward = dis.calc(a, b, None), dis.calc(b, a, None)
    target = grid + forward
    back = cv2.remap(backward, target[..., 0], target[..., 1], cv2.INTER_LINEAR)
    inside = (target[..., 0] >= 0) & (target[..., 0] <= w - 1)
    inside &= (target[..., 1] >= 0) & (target[..., 1] <= h - 1)
    valid = inside & (np.linalg.norm(forward + back, axis=-1) <= 1.0)
    flows.append((forward.astype(np.float16), valid))
  return flows


def warp_error(frames: np.ndarray, flows: list[tuple[np.ndarray, np.ndarray]]) -> float:
  """Mean absolute RGB difference (in [0, 1]) between frame t and frame t+1 warped back to t
  along the true motion (`true_flows`), over the pixels valid there: flicker the truth does not
  have (the truth's own figure is the flow's error)."""
  import cv2  # noqa: PLC0415

  total, count = 0.0, 0
  h, w = frames.shape[1:3]
  grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).astype(np.float32)
  for t, (flow, valid) in enumerate(flows):
    target = grid + flow.astype(np.float32)
    nxt = frames[t + 1].astype(np.float32)
    warped = cv2.remap(nxt, target[..., 0], target[..., 1], cv2.INTER_LINEAR)
    diff = np.abs(warped - frames[t].astype(np.float32)).mean(axis=-1)
    total += float(diff[valid].sum()) / 255.0
    count += int(valid.sum())
  return total / count if count else float("nan")
