"""What a clip's run is given (`Settings`) and what it reports (`VideoResult`)."""

import dataclasses

from pix2pix_jax import files
from pix2pix_jax.colorize.video import probe, source, temporal, writer
from pix2pix_jax.hints import keyframes


@dataclasses.dataclass(frozen=True)
class Settings:
  """A clip's settings, the same for every batch and chunk."""

  encode: writer.EncodeOptions = dataclasses.field(default_factory=writer.EncodeOptions)
  smoothing: temporal.Smoothing = temporal.Smoothing()
  consistency: bool = False  # measure the temporal consistency of source and output
  compare: bool = False  # source and result side by side, twice as wide
  progress: bool = True
  timeout: float = source.DEFAULT_CHUNK_TIMEOUT  # seconds one batch may take to decode
  threads: int | None = None  # decoder (and chunk encoder) threads; None: the default


@dataclasses.dataclass
class VideoResult:
  """What `colorize_video` did; `summary()` is the per-input line."""

  src: str
  dst: str
  frames: int
  width: int
  height: int
  fps: float
  seconds: float
  audio: str  # "none" | "copied" | "re-encoded (codec)"
  scene_cuts: int = 0
  subtitles: str = "none"  # "none" | "copied" | "converted (codec)" | "dropped (why)"
  decoder: str = "decord"
  consistency_in: float | None = None  # mean temporal consistency of the source frames
  consistency_out: float | None = None  # ... and of the colourised frames
  chunks: int = 1
  resumed: int = 0  # chunks reused from a stopped run
  workers: int = 1

  def summary(self) -> str:
    text = (
      f"{self.src} -> {self.dst}: {self.frames} frames {self.width}x{self.height} "
      f"@ {self.fps:.3f} fps, audio {self.audio}, "
      + (f"subtitles {self.subtitles}, " if self.subtitles != "none" else "")
      + f"{self.frames / max(self.seconds, 1e-9):.1f} frames/s"
    )
    if self.consistency_out is not None:
      text += (
        f", temporal consistency {self.consistency_out:.4f} (source {self.consistency_in:.4f})"
      )
    if self.chunks > 1:
      text += (
        f", {self.chunks} chunks on {self.workers} worker{'s' if self.workers > 1 else ''} "
        f"(resumed {self.resumed} of {self.chunks} chunks)"
      )
    return text


def parse_seconds(text: str) -> float:
  """Seconds from "90", "1.5", "01:30" or "1:02:03.250"; ValueError for anything else. The one
  parser lives in `hints.keyframes` (keyframe times), which cannot import colorize."""
  return keyframes.parse_seconds(text)


def check_window(src: str, info: probe.VideoInfo, window: tuple[float, float]) -> None:
  """MediaError where a window (start, duration) cannot hold a frame of `src`."""
  start, duration = window
  if start < 0 or duration <= 0:
    raise ValueError(f"window {window}: start must be >= 0 and duration > 0")
  if info.duration is not None and start >= info.duration:
    raise files.MediaError(
      f"{src}: the window starts at {start:g} s, past the end of the clip ({info.duration:g} s)"
    )
