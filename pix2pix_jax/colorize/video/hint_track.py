"""A clip's first pass for keyframe hints: its luminance at a reduced size and its scene cuts,
shot by shot, each shot's keyframes carried through it (`hints.track`); serial and chunked runs
then take every frame's hints from the one `ClipTrack` (docs/video.md, "Keyframe hints")."""

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pix2pix_jax import progress as progress_lib
from pix2pix_jax.colorize.video import probe, source, temporal
from pix2pix_jax.hints import HintsError, files, keyframes
from pix2pix_jax.hints import track as track_lib

MOTIONS = ("track", "fixed")  # --hint-motion
_BATCH = 16


@dataclasses.dataclass(frozen=True)
class ClipTrack:
  """Every frame's hint pixels: the tracks of the shots that hold keyframes."""

  shots: tuple[tuple[int, track_lib.Track], ...]  # (the shot's first frame, its track)
  frames: int  # frames the pass decoded, from `first`
  first: int = 0  # the whole clip's index of the pass's first frame

  def points(self, t: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Frame t's (whole-clip index) hint pixels, as `Track.points`; None: no hints."""
    for start, track in self.shots:
      if start <= t < start + len(track):
        return track.points(t - start)
    return None

  @property
  def frame_size(self) -> tuple[int, int]:
    return self.shots[0][1].frame_size if self.shots else (0, 0)


def digest(keys: Sequence[keyframes.Keyframe], motion: str, cut_threshold: float) -> str:
  """What a track is made from (the keyframes' hints, the motion, the cut threshold and the
  tracking options): part of a chunked run's resume fingerprint."""
  cuts = (temporal.CUT_MEASURE, cut_threshold)
  h = hashlib.sha256(repr((motion, cuts, track_lib.Options())).encode())
  for key in keys:
    h.update(str(key.frame).encode())
    h.update(np.ascontiguousarray(key.hints.mask).tobytes())
    h.update(np.ascontiguousarray(key.hints.ab).tobytes())
  return h.hexdigest()


def frames_bound(src: str, info: probe.VideoInfo) -> int:
  """An upper bound of the clip's frame count, to check keyframes against before the pass
  counts them exactly (decord's count, else the duration at the nominal rate, plus slack)."""
  backend, reader = source.choose_backend(src, info)
  if reader is not None:
    return len(reader)
  if info.duration and info.fps:
    return int(info.duration * info.fps * 1.01) + 2
  return 2**31 - 1


def _is_keyframe_list(value: Any) -> bool:
  return isinstance(value, list) and bool(value) and isinstance(value[0], keyframes.Keyframe)


def is_keyframe_source(value: Any) -> bool:
  """Whether `value` gives keyframes rather than one hint set: a list of `Keyframe`s, a folder,
  or a JSON file holding {"keyframes": ...}."""
  if _is_keyframe_list(value):
    return True
  if not isinstance(value, (str, os.PathLike)):
    return False
  path = os.fspath(value)
  if os.path.isdir(path):
    return True
  if not path.lower().endswith(".json"):
    return False
  try:
    with open(path, encoding="utf-8") as f:
      return isinstance(json.load(f), dict)
  except (OSError, UnicodeDecodeError, ValueError):
    return False  # hint_files.read says what is wrong with it


def load_keyframes(value: Any, src: str, info: probe.VideoInfo) -> list[keyframes.Keyframe]:
  """The keyframes `value` gives for the clip `src`: a list of them as it is, or a hint file or
  folder read by `keyframes.load` (HintsError: one line naming the file)."""
  if _is_keyframe_list(value):
    return value
  if not isinstance(value, (str, os.PathLike)):  # one hint set in memory: a keyframe at 0
    hints = files.as_hints(value, info.height, info.width, photo=src)
    return [keyframes.Keyframe(0, hints)]
  return keyframes.load(
    value,
    frames=frames_bound(src, info),
    fps=info.fps,
    height=info.height,
    width=info.width,
  )


def first_frame(window: tuple[float, float], info: probe.VideoInfo) -> int:
  """The clip's index of a window's first frame (the first shown at or after its start)."""
  return keyframes.frame_at(window[0], info.fps or 25.0)


class CutDetector:
  """Scene cuts as the smoothing's (`temporal.DEFAULT_CUT_THRESHOLD`): a frame whose luminance
  histogram's total-variation distance from the previous frame's, plus their mean absolute
  luminance difference (on a [-1, 1] scale), exceeds `threshold` starts a shot, as does the
  first frame."""

  def __init__(self, threshold: float):
    self.threshold, self._previous = threshold, None

  def __call__(self, luma: np.ndarray) -> bool:
    """Whether the frame of (small) luminance uint8 [h, w] starts a shot."""
    n = temporal.CUT_HIST_BINS
    bins = np.minimum((luma.astype(np.int32) * n) // 255, n - 1)
    hist = np.bincount(bins.ravel(), minlength=n) / bins.size
    level = luma.astype(np.float32) / 127.5
    previous, self._previous = self._previous, (hist, level)
    if previous is None:
      return True
    change = 0.5 * np.abs(hist - previous[0]).sum() + np.abs(level - previous[1]).mean()
    return change > self.threshold


class _Shots:
  """Collects a shot's small luminance until a cut, then tracks its keyframes through it."""

  def __init__(self, keys: Sequence[keyframes.Keyframe], still: bool, first: int):
    self.keys, self.still = sorted(keys, key=lambda k: k.frame), still
    self.start, self.luma, self.tracks = first, [], []
    self.flow = None if still else track_lib.dis_flow()

  def add(self, luma: np.ndarray, cut: bool) -> None:
    if cut and self.luma:
      self.close()
    self.luma.append(luma)

  def close(self) -> None:
    end = self.start + len(self.luma)
    keys = [
      keyframes.Keyframe(k.frame - self.start, k.hints)
      for k in self.keys
      if self.start <= k.frame < end
    ]
    if keys:
      cuts = np.zeros(len(self.luma), bool)
      cuts[0] = True
      shot = track_lib.track(self.luma, keys, cuts, flow=self.flow, still=self.still)
      self.tracks.append((self.start, shot))
    self.start, self.luma = end, []


def first_pass(
  src: str,
  info: probe.VideoInfo,
  keys: Sequence[keyframes.Keyframe],
  *,
  motion: str = "track",
  cut_threshold: float,
  window: tuple[float, float] | None = None,
  timeout: float = source.DEFAULT_CHUNK_TIMEOUT,
  threads: int | None = None,
  progress: bool = True,
  source_name: str = "keyframes",
) -> ClipTrack:
  """Decodes the clip (or `window`, (start, duration) seconds) once at a reduced size: scene
  cuts (`CutDetector`, as the smoothing finds them) and each keyframe's hints carried through its
  shot (`motion` "fixed": they stay where they are). HintsError naming `source_name` (the
  keyframe file) for a keyframe past the end."""
  if motion not in MOTIONS:
    raise ValueError(f"hint motion {motion!r}: one of {', '.join(MOTIONS)}")
  first = 0
  backend, reader = "ffmpeg", None
  if window is None:
    backend, reader = source.choose_backend(src, info, threads=threads)
  else:
    first = first_frame(window, info)
  batches = source.iter_chunks(
    src,
    _BATCH,
    timeout=timeout,
    reader=reader,
    backend=backend,
    info=info,
    window=window,
    threads=threads,
  )
  shots, is_cut, count = _Shots(keys, motion == "fixed", first), CutDetector(cut_threshold), 0
  total = len(reader) if reader is not None else None
  bar = progress_lib.Progress(
    f"{os.path.basename(src)}: hint track", total, unit="frames", enabled=progress
  )
  with bar:
    for frames in batches:
      for small in track_lib.small_luma(frames):
        shots.add(small, is_cut(small))
      count += len(frames)
      bar.update(len(frames))
    shots.close()
  late = [k.frame for k in keys if k.frame >= first + count]
  if late:
    raise HintsError(
      f"{source_name}: keyframe at frame {late[0]} is past the end of the clip ({first + count} "
      f"frames in {src})"
    )
  return ClipTrack(tuple(shots.tracks), count, first)
