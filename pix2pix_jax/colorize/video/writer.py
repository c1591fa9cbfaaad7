"""The writer stage: frames encoded by ffmpeg on a writer thread, then the source's audio,
subtitles, chapters and tags muxed in (codecs, pixel formats and streams: docs/video.md)."""

import contextlib
import dataclasses
import fractions
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from pix2pix_jax import files
from pix2pix_jax.colorize.video import probe, source

# libx264/libx265 preset: the encoder shares the CPU with the model, and a fast preset leaves the
# model more of it (larger files at about the same quality).
DEFAULT_PRESET = "veryfast"
CODECS = {
  "h264": "libx264",
  "h265": "libx265",
  "hevc": "libx265",
  "vp8": "libvpx",
  "vp9": "libvpx-vp9",
  "av1": "libaom-av1",
  "mpeg4": "mpeg4",
  "mjpeg": "mjpeg",
}
_DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx": 10, "libvpx-vp9": 24, "libaom-av1": 28}
_WEBM_CODECS = ("libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1")
# Output-container -> audio codec used when the source's audio cannot be copied.
_AUDIO_FALLBACK = {".webm": "libopus", ".ogv": "libvorbis"}
ENCODER_NICENESS = 10
_QUEUE_CHUNKS = 2  # chunks waiting for the encoder


@dataclasses.dataclass
class EncodeOptions:
  """How the output video is encoded. codec "auto": H.264, or VP9 for WebM."""

  codec: str = "auto"
  crf: int | None = None  # None: the codec's default above
  preset: str = DEFAULT_PRESET  # libx264/libx265 only
  pix_fmt: str = "yuv420p"


def resolve_codec(options: EncodeOptions, dst: str) -> str:
  """The ffmpeg encoder for `options` and `dst`'s container; MediaError if it cannot hold it."""
  ext = os.path.splitext(dst)[1].lower()
  if options.codec == "auto":
    return "libvpx-vp9" if ext == ".webm" else "libx264"
  codec = CODECS.get(options.codec, options.codec)
  if ext == ".webm" and codec not in _WEBM_CODECS:
    raise files.MediaError(f"{dst}: a .webm file cannot hold {options.codec} (use vp8, vp9 or av1)")
  return codec


def encoder_args(options: EncodeOptions, dst: str, width: int, height: int) -> list[str]:
  """ffmpeg output options for the video stream."""
  codec = resolve_codec(options, dst)
  pix_fmt = options.pix_fmt
  if codec in ("libx264", "libx265") and pix_fmt == "yuv420p" and (width % 2 or height % 2):
    pix_fmt = "yuv444p"  # 4:2:0 H.264/H.265 cannot code odd sizes; keep the size exact
  if codec == "mjpeg" and pix_fmt == "yuv420p":
    pix_fmt = "yuvj420p"
  args = ["-c:v", codec, "-pix_fmt", pix_fmt]
  crf = options.crf if options.crf is not None else _DEFAULT_CRF.get(codec)
  if codec in ("libx264", "libx265"):
    args += ["-crf", str(crf), "-preset", options.preset]
  elif codec in ("libvpx", "libvpx-vp9", "libaom-av1"):
    args += ["-crf", str(crf), "-b:v", "0" if codec != "libvpx" else "10M"]
  elif codec in ("mpeg4", "mjpeg"):
    args += ["-q:v", str(options.crf if options.crf is not None else 3)]
  elif crf is not None:
    args += ["-crf", str(crf)]
  # Tag the matrix swscale uses for RGB -> YUV, so players convert back with the same one, and
  # say SDR BT.709 outright (a player would otherwise guess, e.g. from the size). ffmpeg takes
  # primaries and transfer from the frames, so they are set on the frames.
  if pix_fmt.startswith("yuv"):
    args += ["-colorspace", "smpte170m"]
    args += ["-vf", "setparams=color_primaries=bt709:color_trc=bt709"]
  if os.path.splitext(dst)[1].lower() in (".mp4", ".m4v", ".mov"):
    args += ["-movflags", "+faststart"]
  return args


def _lower_priority(cmd: list[str]) -> list[str]:
  """`cmd` run under `nice`, where there is one: the encoder then uses the CPU time the model
  leaves instead of stalling the model's threads, which matters where the model runs on the
  same CPU cores; where CPU is not scarce it changes nothing."""
  nice = shutil.which("nice")
  return [nice, "-n", str(ENCODER_NICENESS), *cmd] if nice else cmd


class FrameWriter:
  """ffmpeg reading raw RGB frames from a pipe, fed by a writer thread from a bounded queue."""

  def __init__(
    self,
    path: str,
    width: int,
    height: int,
    fps: fractions.Fraction,
    options: EncodeOptions,
    *,
    output_format: str | None = None,
    threads: int | None = None,
  ):
    """threads: the encoder's threads (None: ffmpeg's choice, from the host's cores)."""
    self.path = path
    self._log = tempfile.TemporaryFile()
    fmt = ["-f", output_format] if output_format else []
    cmd = [
      probe.ffmpeg_exe(),
      "-hide_banner",
      "-nostdin",
      "-loglevel",
      "error",
      "-y",
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "-s",
      f"{width}x{height}",
      "-framerate",
      f"{fps.numerator}/{fps.denominator}",
      "-i",
      "pipe:0",
      "-an",
      *encoder_args(options, path, width, height),
      *(["-threads", str(threads)] if threads else []),
      *fmt,
      path,
    ]
    self._proc = subprocess.Popen(_lower_priority(cmd), stdin=subprocess.PIPE, stderr=self._log)
    self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
    self._error: BaseException | None = None
    self._thread = threading.Thread(target=self._work, name="encode", daemon=True)
    self._thread.start()

  def _work(self) -> None:
    while True:
      frames = self._queue.get()
      if frames is None:
        return
      if self._error is not None:
        continue  # drain, so put() never blocks forever
      try:
        self._proc.stdin.write(memoryview(np.ascontiguousarray(frames)).cast("B"))
      except (BrokenPipeError, OSError) as e:
        self._error = e

  def write(self, frames: np.ndarray) -> None:
    """Queues uint8 [n, H, W, 3] frames; raises if ffmpeg has already failed."""
    if self._error is not None:
      self._fail()
    self._queue.put(frames)

  def close(self) -> None:
    """Waits for ffmpeg to finish; MediaError with ffmpeg's message if it failed."""
    self._queue.put(None)
    self._thread.join()
    try:
      self._proc.stdin.close()
    except OSError as e:
      self._error = self._error or e
    code = self._proc.wait()
    if code or self._error is not None:
      self._fail()
    self._log.close()

  def abort(self) -> None:
    """Stops ffmpeg without waiting for the queue (error path)."""
    self._error = self._error or RuntimeError("aborted")
    self._proc.kill()
    _put_with_timeout(self._queue, None)
    self._thread.join(timeout=5.0)
    self._proc.wait()
    self._log.close()

  def _fail(self) -> None:
    self._proc.kill()
    self._proc.wait()
    self._log.seek(0)
    message = self._log.read().decode(errors="replace")
    raise files.MediaError(f"{self.path}: cannot encode output ({probe.ffmpeg_cause(message)})")


def _put_with_timeout(q: queue.Queue, item: Any) -> None:
  try:
    q.put(item, timeout=1.0)
  except queue.Full:
    pass


# Output container -> the text subtitle codec it holds; containers not listed hold none.
SUBTITLE_CODECS = {
  ".mkv": "srt",
  ".mp4": "mov_text",
  ".m4v": "mov_text",
  ".mov": "mov_text",
  ".3gp": "mov_text",
  ".webm": "webvtt",
}


_EDIT_LIST_EXTENSIONS = (".mp4", ".m4v", ".mov", ".3gp")


@dataclasses.dataclass(frozen=True)
class Muxed:
  """How `mux` added the source's streams."""

  audio: str  # "none" | "copied" | "re-encoded (codec)"
  subtitles: str  # "none" | "copied" | "converted (codec)" | "dropped (why)"


def mux(
  video: str,
  src: str,
  dst: str,
  *,
  info: probe.VideoInfo | None = None,
  window: tuple[float, float] | None = None,
) -> Muxed:
  """Video stream of `video` + `src`'s audio and subtitle streams, chapters and tags -> `dst`
  (docs/video.md); `window` (start, duration) seconds of `src` only.

  Copies audio and subtitles; where the container refuses a codec, re-encodes the audio
  (AAC; Opus for WebM, Vorbis for Ogg) and converts or drops the subtitles.
  """
  info = info or probe.probe(src)
  ext = os.path.splitext(dst)[1].lower()
  seek = source.window_args(window)
  base = [probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
  base += ["-i", video, *seek, "-i", src, "-map", "0:v:0", "-map", "1:a?"]
  base += ["-map_metadata", "1", "-map_chapters", "1", "-c:v", "copy"]
  if window and ext not in _EDIT_LIST_EXTENSIONS:
    # Copied packets from before the window's start would lead it with negative times, which
    # Matroska (and others) shift the video by: start at the first packet inside the window.
    # (MP4/MOV keep them and hide them with an edit list, which cuts to the sample.)
    base += ["-copypriorss", "0"]
  if ext == ".mkv":
    base += ["-map", "1:t?", "-c:t", "copy"]  # fonts of ASS subtitles
  tail = ["-movflags", "+faststart"] if ext in (".mp4", ".m4v", ".mov") else []
  subtitle_plans: list[tuple[list[str], str]] = [([], "none")]
  if info.subtitle_codecs:
    text_codec = SUBTITLE_CODECS.get(ext)
    if text_codec is None:
      subtitle_plans = [([], f"dropped ({ext or 'this'} output holds no subtitle streams)")]
    else:
      copy, convert = ["-map", "1:s", "-c:s", "copy"], ["-map", "1:s", "-c:s", text_codec]
      subtitle_plans = [
        (copy, "copied"),
        (convert, f"converted ({text_codec})"),
        ([], f"dropped ({ext} output cannot hold {'/'.join(info.subtitle_codecs)})"),
      ]
  audio_plans = [("copy", "copied")]
  if info.audio_codec:
    codec = _AUDIO_FALLBACK.get(ext, "aac")
    audio_plans.append((codec, f"re-encoded ({codec})"))
    if window and ext not in _EDIT_LIST_EXTENSIONS:
      # Decoded and cut to the sample; lossless codecs stay lossless.
      lossless = info.audio_codec.startswith("pcm_") or info.audio_codec == "flac"
      codec = info.audio_codec if lossless else codec
      audio_plans = [(codec, f"re-encoded ({codec}, cut to the window)")] + audio_plans[1:]
  stderr = ""
  for audio_codec, audio in audio_plans:
    for subtitle_args, subtitles in subtitle_plans:
      cmd = base + subtitle_args + ["-c:a", audio_codec, *tail, dst]
      proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
      if proc.returncode == 0:
        return Muxed(audio if info.audio_codec else "none", subtitles)
      stderr = proc.stderr
  what = "the audio" if info.audio_codec else "the source's streams"
  raise files.MediaError(f"{dst}: cannot add {what} ({probe.ffmpeg_cause(stderr)})")


@dataclasses.dataclass
class Output:
  """Where `output`'s caller writes the video stream, and how the other streams went."""

  video: str
  muxed: Muxed = Muxed("none", "none")


@contextlib.contextmanager
def output(
  dst: str,
  src: str,
  info: probe.VideoInfo,
  *,
  overwrite: bool,
  window: tuple[float, float] | None = None,
) -> Iterator[Output]:
  """`dst`, written atomically: the caller writes the video stream to `.video`; then the
  source's other streams are muxed in (where it has any) and `dst` appears complete."""
  with files.atomic_output(dst, overwrite=overwrite) as tmp:
    out = Output(files.temp_name(dst, "video") if info.needs_remux else tmp)
    try:
      yield out
      if out.video != tmp:
        out.muxed = mux(out.video, src, tmp, info=info, window=window)
    finally:
      if out.video != tmp and os.path.exists(out.video):
        os.remove(out.video)
