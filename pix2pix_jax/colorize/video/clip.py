"""`colorize_video`: one clip, serially or in chunks over several workers, chosen here."""

import os
from collections.abc import Callable
from typing import Any

from pix2pix_jax import files, locks
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize.video import (
  chunk_plan,
  chunked,
  colourise,
  hint_track,
  probe,
  serial,
  settings,
  source,
  temporal,
  writer,
)


def colorize_video(
  colorizer: colorizer_lib.Colorizer,
  src: str,
  dst: str,
  *,
  hints: Any = None,
  hint_motion: str = "track",
  workers: int | None = None,
  chunk_seconds: float | None = None,
  window: tuple[float, float] | None = None,
  overwrite: bool = False,
  encode: writer.EncodeOptions | None = None,
  smoothing: float = temporal.DEFAULT_SMOOTHING,
  cut_threshold: float = temporal.DEFAULT_CUT_THRESHOLD,
  consistency: bool = False,
  compare: bool = False,
  progress: bool = True,
  timeout: float = source.DEFAULT_CHUNK_TIMEOUT,
  threads: int | None = None,
  note: Callable[[str], None] | None = None,
) -> settings.VideoResult:
  """Colourises the clip `src` into `dst` (written atomically, one writer at a time).

  hints: colour hints (a model trained with them only): a keyframe file or folder, or a list of
    `keyframes.Keyframe`; or one hint set (an RGBA scribble of the clip's size, a point list, a
    scribble or point file), a keyframe at frame 0.
  hint_motion: "track": keyframe hints move with the picture through their shot (a first pass
    over the clip, `hint_track`); "fixed": they stay where they are painted (one hint set: on
    every frame, as it is).
  workers: pipelines over chunks of the clip (None: `chunk_plan.default_workers`; 1 without
    chunk_seconds: one pipeline). Windows, short clips and clips that cannot be split frame
    exactly run in one pipeline.
  window: (start, duration) seconds: only the frames in [start, start + duration).
  smoothing: 0 (off) .. <1, the weight of the previous frame's chroma in the moving average,
    reset at scene cuts (cut_threshold). consistency: also measure the temporal consistency of
    source and output. compare: source and result side by side, twice as wide.
  timeout: seconds one batch may take to decode. threads: decoder threads (None: the default).
  note: called with a line to report (default: print).
  """
  note = note or (lambda line: print(line, flush=True))
  options = settings.Settings(
    encode=encode or writer.EncodeOptions(),
    smoothing=temporal.Smoothing(smoothing, cut_threshold),
    consistency=consistency,
    compare=compare,
    progress=progress,
    timeout=timeout,
    threads=threads,
  )
  files.check_output(dst, overwrite=overwrite)
  info = probe.probe(src)
  writer.resolve_codec(options.encode, dst)  # fail early on an impossible codec/container pair
  if window is not None:
    settings.check_window(src, info, window)
  with locks.output_lock(dst):
    clip_hints = None
    if hints is not None:
      clip_hints = _clip_hints(colorizer, hints, hint_motion, src, info, window, options)
    stages = colourise.ClipColorizer(colorizer, options.smoothing, clip_hints)
    if window is None:
      if workers is None:
        workers = chunk_plan.default_workers(info.width, info.height, colorizer.batch_size)
      if workers > 1 or chunk_seconds is not None:
        kw = dict(workers=workers, chunk_seconds=chunk_seconds, overwrite=overwrite, note=note)
        result = chunked.run(stages, src, dst, info, options, **kw)
        if result is not None:
          return result
    return serial.run(stages, src, dst, info, options, overwrite=overwrite, window=window)


def _clip_hints(
  colorizer: colorizer_lib.Colorizer,
  hints: Any,
  motion: str,
  src: str,
  info: probe.VideoInfo,
  window: tuple[float, float] | None,
  options: settings.Settings,
) -> colourise.ClipHints:
  """The clip's hints: one hint set held still on every frame, or keyframes through a first
  pass (which, under a window, reaches back and on to the keyframes the window's shots use)."""
  if motion not in hint_track.MOTIONS:
    raise ValueError(f"hint_motion {motion!r}: one of {', '.join(hint_track.MOTIONS)}")
  if motion == "fixed" and not hint_track.is_keyframe_source(hints):
    return colourise.ClipHints.fixed(colorizer, hints, info.height, info.width, photo=src)
  colorizer.check_takes_hints()
  keys = hint_track.load_keyframes(hints, src, info)
  pass_window = window
  if window is not None:
    fps = info.fps or 25.0
    start = min(window[0], min(k.frame for k in keys) / fps)
    end = max(window[0] + window[1], (max(k.frame for k in keys) + 1) / fps)
    pass_window = (start, end - start)
  track = hint_track.first_pass(
    src,
    info,
    keys,
    motion=motion,
    cut_threshold=options.smoothing.cut_threshold,
    window=pass_window,
    timeout=options.timeout,
    threads=options.threads,
    progress=options.progress,
    source_name=os.fspath(hints) if isinstance(hints, (str, os.PathLike)) else "keyframes",
  )
  digest = hint_track.digest(keys, motion, options.smoothing.cut_threshold)
  return colourise.ClipHints(colorizer, digest, track=track)
