"""The clip tab's edits: a clip's shots (scene cuts, as the colourising first pass finds them),
a frame of it as a keyframe hinted as a photo (one `session.Session` per keyframe), a preview of
a shot with the keyframe hints moving through it, and the whole clip colourised with its
keyframe file. Pure functions of a `ClipState` but `colourise`, which writes files."""

import dataclasses
import json
import os
import shlex
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image

from pix2pix_jax import files
from pix2pix_jax.app import actions, session
from pix2pix_jax.app import engine as engine_lib
from pix2pix_jax.app.session import Session
from pix2pix_jax.colorize import keyframes_main
from pix2pix_jax.colorize.video import clip as clip_lib
from pix2pix_jax.colorize.video import probe, source, temporal
from pix2pix_jax.hints import HintsError, keyframes
from pix2pix_jax.hints import files as hint_files
from pix2pix_jax.hints import track as track_lib

VIDEO_TYPES = (".mp4", ".mkv", ".webm", ".mov", ".avi")
PREVIEW_FRAMES = 6
KEYFRAME_FILE = keyframes_main.KEYFRAME_FILE
_BATCH = 16


@dataclasses.dataclass(frozen=True, eq=False)
class Clip:
  """An opened clip: its size, frame count and shots."""

  path: str
  name: str
  width: int
  height: int
  frames: int
  shots: tuple[int, ...]  # each shot's first frame
  thumbs: tuple[np.ndarray, ...]  # each shot's first frame, gray uint8 [H, W, 3]

  def shot_of(self, t: int) -> int:
    return int(np.searchsorted(self.shots, t, side="right")) - 1

  def shot_range(self, shot: int) -> tuple[int, int]:
    """[first, end) frames of shot `shot`."""
    end = self.shots[shot + 1] if shot + 1 < len(self.shots) else self.frames
    return self.shots[shot], end


@dataclasses.dataclass(frozen=True, eq=False)
class ClipState:
  """A browser tab's clip: the frame being hinted, the keyframes' Sessions (by frame) and the
  colour settings shared by all of them (`base`: a Session without a photo)."""

  clip: Clip | None = None
  frame: int | None = None
  keys: tuple[tuple[int, Session], ...] = ()
  base: Session = Session()
  preview: tuple[tuple[int, np.ndarray], ...] = ()  # (frame, colourised uint8 [H, W, 3])

  def replace(self, **changes) -> "ClipState":
    return dataclasses.replace(self, **changes)

  @property
  def hinted(self) -> list[tuple[int, Session]]:
    """The keyframes that have hints, by frame."""
    return [(t, s) for t, s in self.keys if s.hints.hints]


def current(state: ClipState) -> Session:
  """The Session of the frame being hinted (without a photo where there is none)."""
  return dict(state.keys).get(state.frame, state.base)


def put(state: ClipState, s: Session) -> ClipState:
  """The state with the current frame's Session `s`; its colour settings become the clip's."""
  base = state.base.replace(
    colour=s.colour,
    hints=session.HintState(recent=s.hints.recent),
    saturation=s.saturation,
    reference=s.reference,
    reference_name=s.reference_name,
  )
  if state.frame is None or s.photo is None:
    return state.replace(base=base)
  keys = dict(state.keys)
  keys[state.frame] = s
  return state.replace(keys=tuple(sorted(keys.items())), base=base)


def open_clip(engine: engine_lib.Engine, state: ClipState, path: str, name: str | None = None):
  """A new clip: its shots found, its first frame to hint; MediaError (one line naming the
  file) for a file that is not a readable video."""
  name = name or os.path.basename(path)
  if os.path.splitext(name)[1].lower() not in VIDEO_TYPES:
    raise files.MediaError(f"{name}: not a clip ({', '.join(VIDEO_TYPES)})")
  try:
    picked, count = keyframes_main.pick_frames(
      path, cut_threshold=temporal.DEFAULT_CUT_THRESHOLD, progress=False
    )
  except files.MediaError as e:
    raise files.MediaError(str(e).replace(path, name)) from e
  shots = tuple(t for t, _ in picked)
  thumbs = tuple(gray for _, gray in picked)
  height, width = thumbs[0].shape[:2]
  clip = Clip(path, name, width, height, count, shots, thumbs)
  return select_frame(engine, ClipState(clip=clip, base=state.base), 0)


def decode(clip: Clip, keep: Iterable[int], luma: tuple[int, int] | None = None):
  """({t: uint8 [H, W, 3]} of the frames `keep`, the reduced luminance of the frames
  [luma[0], luma[1]) or None), decoding from the clip's start to the last frame needed."""
  keep = set(keep)
  last = max(keep | ({luma[1] - 1} if luma else set()))
  info = probe.probe(clip.path)
  backend, reader = source.choose_backend(clip.path, info)
  frames, small, t = {}, [], 0
  for batch in source.iter_chunks(clip.path, _BATCH, reader=reader, backend=backend, info=info):
    if luma and t < luma[1] and t + len(batch) > luma[0]:
      lo, hi = max(0, luma[0] - t), min(len(batch), luma[1] - t)
      small.extend(track_lib.small_luma(batch[lo:hi]))
    frames.update((t + i, batch[i]) for i in range(len(batch)) if t + i in keep)
    t += len(batch)
    if t > last:
      break
  if not keep <= frames.keys():
    raise files.MediaError(f"{clip.name}: frame {min(keep - frames.keys())} is missing")
  return frames, (np.stack(small) if luma else None)


def select_frame(engine: engine_lib.Engine, state: ClipState, t: int) -> ClipState:
  """Frame `t` to hint: its keyframe's Session, or a new one prepared from the frame. A frame
  left without hints is no keyframe."""
  clip = _clip(state)
  t = min(max(int(t), 0), clip.frames - 1)
  keys = {k: s for k, s in state.keys if s.hints.hints or k == t}
  base, s = state.base, keys.get(t)
  stale = s is None or (s.saturation, s.reference) != (base.saturation, base.reference)
  if s is None:
    (rgb,) = decode(clip, [t])[0].values()
    photo = engine.prepare(rgb, path=f"{os.path.splitext(clip.name)[0]} frame {t}")
    s = Session(photo=photo)
  s = s.replace(
    colour=base.colour,
    hints=dataclasses.replace(s.hints, recent=base.hints.recent),
    saturation=base.saturation,
    reference=base.reference,
    reference_name=base.reference_name,
  )
  keys[t] = actions.refresh(engine, s) if stale else s
  return state.replace(frame=t, keys=tuple(sorted(keys.items())))


def select_shot(engine: engine_lib.Engine, state: ClipState, shot: int) -> ClipState:
  """A shot's first frame to hint."""
  clip = _clip(state)
  return select_frame(engine, state, clip.shots[min(max(int(shot), 0), len(clip.shots) - 1)])


def keyframe_hints(state: ClipState) -> list[tuple[int, np.ndarray]]:
  """[(frame, RGBA scribble at the clip's size)] of the keyframes with hints."""
  clip = _clip(state)
  return [(t, session.scribble(s.hints.hints, clip.width, clip.height)) for t, s in state.hinted]


def preview(engine: engine_lib.Engine, state: ClipState, count: int = PREVIEW_FRAMES):
  """`count` frames spread over the current frame's shot, colourised with the shot's keyframe
  hints carried through it (as the whole clip's first pass carries them; without the temporal
  smoothing)."""
  clip = _clip(state)
  first, end = clip.shot_range(clip.shot_of(state.frame or 0))
  shown = sorted({int(round(v)) for v in np.linspace(first, end - 1, count)})
  keys = [
    keyframes.Keyframe(t - first, hint_files.as_hints(rgba, clip.height, clip.width))
    for t, rgba in keyframe_hints(state)
    if first <= t < end
  ]
  frames, luma = decode(clip, shown, (first, end) if keys and engine.takes_hints else None)
  moved = None
  if luma is not None:
    cuts = np.zeros(len(luma), bool)
    cuts[0] = True
    moved = track_lib.track(luma, keys, cuts)
  colorizer = engine.controls(state.base.saturation, state.base.reference)
  out = []
  for t in shown:
    hints = None if moved is None else moved.hints(t - first)
    out.append((t, colorizer(frames[t][None], hints=hints)[0]))
  return state.replace(preview=tuple(out))


def write_keyframes(state: ClipState, folder: str) -> list[str]:
  """The keyframes with hints as scribble PNGs NNNNNN.png and the keyframe file that lists them
  (`pix2pix-colorize --hints`), written into `folder` (its previous ones removed); their
  paths, the keyframe file first; [] without keyframes."""
  for name in os.listdir(folder) if os.path.isdir(folder) else []:
    if name == KEYFRAME_FILE or (name.endswith(".png") and name[:-4].isdigit()):
      os.remove(os.path.join(folder, name))
  hinted = keyframe_hints(state)
  if not hinted:
    return []
  os.makedirs(folder, exist_ok=True)
  entries, paths = [], []
  for t, rgba in hinted:
    name = f"{t:06d}.png"
    Image.fromarray(rgba, "RGBA").save(os.path.join(folder, name))
    entries.append({"frame": t, "scribble": name})
    paths.append(os.path.join(folder, name))
  listing = os.path.join(folder, KEYFRAME_FILE)
  with open(listing, "w", encoding="utf-8") as f:
    json.dump({"keyframes": entries}, f, indent=1)
  return [listing, *paths]


def colourise(
  engine: engine_lib.Engine,
  state: ClipState,
  folder: str,
  on_frames: Callable[[int], None] = lambda n: None,
) -> tuple[str, list[str], str]:
  """The whole clip colourised into `folder` with the keyframe hints tracked through their
  shots, as pix2pix-colorize does with the keyframe file written beside it; (the video, the
  files to download, the command that makes the same video). `on_frames(n)`: n more frames
  went into the generator."""
  clip, base = _clip(state), state.base
  os.makedirs(folder, exist_ok=True)
  stem = os.path.splitext(clip.name)[0] or "clip"
  hint_paths = write_keyframes(state, folder) if engine.takes_hints else []
  dst = os.path.join(folder, f"{stem}_color.mp4")
  colorizer = _Counted(engine.controls(base.saturation, base.reference), on_frames)
  try:
    clip_lib.colorize_video(
      colorizer,
      clip.path,
      dst,
      hints=hint_paths[0] if hint_paths else None,
      hint_motion="track",
      workers=1,
      overwrite=True,
      progress=False,
      note=lambda line: None,
    )
  except (files.MediaError, HintsError) as e:
    raise files.MediaError(str(e).replace(clip.path, clip.name)) from e
  flags = ["--hints", KEYFRAME_FILE] if hint_paths else []
  if base.saturation != 1.0:
    flags += ["--saturation", f"{base.saturation:g}"]
  if base.reference_name:
    flags += ["--reference", base.reference_name]
  words = ["pix2pix-colorize", *engine.model_flags, clip.name, *flags]
  return dst, [dst, *hint_paths], shlex.join([*words, "-o", os.path.basename(dst)])


class _Counted:
  """A Colorizer that reports how many frames go into its generator (the run's progress)."""

  def __init__(self, colorizer, on_frames: Callable[[int], None]):
    self._colorizer, self._on_frames = colorizer, on_frames

  def __getattr__(self, name: str):
    return getattr(self._colorizer, name)

  def predict(self, frames: np.ndarray, hint_batch=None):
    self._on_frames(len(frames))
    return self._colorizer.predict(frames, hint_batch)


def _clip(state: ClipState) -> Clip:
  if state.clip is None:
    raise HintsError("no clip yet: upload one")
  return state.clip
