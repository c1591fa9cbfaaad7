"""Media helpers: the ffmpeg binary, probing, image IO and atomic output files.

ffmpeg is the binary shipped by `imageio-ffmpeg` (there is no ffprobe): streams are probed by
parsing the header that `ffmpeg -i` prints. Every failure a user can cause (missing file, not a
media file, no video stream, ...) raises `MediaError` with a one-line message naming the file.
"""

import contextlib
import dataclasses
import errno
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (
  ".mp4",
  ".m4v",
  ".mkv",
  ".webm",
  ".avi",
  ".mov",
  ".mpg",
  ".mpeg",
  ".ts",
  ".m2ts",
  ".flv",
  ".wmv",
  ".ogv",
  ".3gp",
  ".gif",
)
# PIL formats whose files can keep an alpha channel on output.
_ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")


class MediaError(Exception):
  """A user-facing failure about one file: str() is the one-line message."""


def ffmpeg_exe() -> str:
  return imageio_ffmpeg.get_ffmpeg_exe()


def kind_of(path: str) -> str | None:
  """'image', 'video' or None (not a media file by its extension)."""
  ext = os.path.splitext(path)[1].lower()
  if ext in IMAGE_EXTENSIONS:
    return "image"
  if ext in VIDEO_EXTENSIONS:
    return "video"
  return None


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What `ffmpeg -i` says about a file's first video stream and its audio."""

  width: int
  height: int
  codec: str
  fps: float | None  # the stream's nominal rate, None when ffmpeg prints none
  duration: float | None  # seconds, None when unknown
  audio_codec: str | None  # None: no audio stream


_STREAM_RE = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): (\w+)(.*)")
_SIZE_RE = re.compile(r", (\d{1,5})x(\d{1,5})[ ,\n]")
_FPS_RE = re.compile(r", ([\d.]+)(k?) fps")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")


def probe(path: str) -> VideoInfo:
  """Parses `ffmpeg -i`; raises MediaError for a missing, non-media or video-less file."""
  if not os.path.exists(path):
    raise MediaError(f"{path}: no such file")
  if os.path.isdir(path):
    raise MediaError(f"{path}: is a directory")
  proc = subprocess.run(
    [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path],
    capture_output=True,
    text=True,
    errors="replace",
    check=False,
  )
  text = proc.stderr
  if "Invalid data found" in text or "could not find codec parameters" in text.lower():
    raise MediaError(f"{path}: not a readable media file ({_probe_cause(text)})")
  if "Permission denied" in text:
    raise MediaError(f"{path}: permission denied")
  video = audio = None
  for match in _STREAM_RE.finditer(text):
    if match.group(1) == "Video" and video is None and "attached pic" not in match.group(3):
      video = match
    elif match.group(1) == "Audio" and audio is None:
      audio = match
  if video is None:
    if "Stream #" in text:
      raise MediaError(f"{path}: has no video stream")
    raise MediaError(f"{path}: not a readable media file ({_probe_cause(text)})")
  rest = video.group(3) + "\n"
  size = _SIZE_RE.search(rest)
  if size is None:
    raise MediaError(f"{path}: video stream has no frame size (unsupported codec?)")
  fps = _FPS_RE.search(rest)
  fps_value = float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else None
  duration = _DURATION_RE.search(text)
  seconds = None
  if duration:
    h, m, s = duration.groups()
    seconds = int(h) * 3600 + int(m) * 60 + float(s)
  return VideoInfo(
    width=int(size.group(1)),
    height=int(size.group(2)),
    codec=video.group(2),
    fps=fps_value,
    duration=seconds,
    audio_codec=audio.group(2) if audio else None,
  )


def _probe_cause(text: str) -> str:
  """The demuxer's own complaint (e.g. "moov atom not found"), else the last line."""
  causes = [
    line.split("] ", 1)[1].strip()
    for line in text.splitlines()
    if line.startswith("[") and "] " in line and "@ 0x" in line
  ]
  return causes[-1] if causes else last_line(text)


def last_line(text: str) -> str:
  """The last non-empty line of ffmpeg's stderr, for error messages."""
  lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
  return lines[-1] if lines else "no message"


def count_frames(path: str) -> int:
  """Decodes the whole video stream with ffmpeg and returns its exact frame count (slow)."""
  proc = subprocess.run(
    [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path, "-map", "0:v:0", "-f", "null", "-"],
    capture_output=True,
    text=True,
    errors="replace",
    check=False,
  )
  frames = re.findall(r"frame=\s*(\d+)", proc.stderr)
  if proc.returncode or not frames:
    raise MediaError(f"{path}: cannot decode ({last_line(proc.stderr)})")
  return int(frames[-1])


# ---------------------------------------------------------------------------------------------
# Images


@dataclasses.dataclass
class LoadedImage:
  rgb: np.ndarray  # uint8 [H, W, 3], orientation applied
  alpha: np.ndarray | None  # uint8 [H, W] or None
  format: str | None  # PIL format name of the source


def load_image(path: str) -> LoadedImage:
  """Any PIL-readable image (gray, RGB, RGBA, palette, 16-bit) -> uint8 RGB as displayed.

  EXIF orientation is applied; 16-bit images are scaled to 8 bits.
  """
  if not os.path.exists(path):
    raise MediaError(f"{path}: no such file")
  try:
    with Image.open(path) as image:
      image.load()
      fmt = image.format
      image = ImageOps.exif_transpose(image)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise MediaError(f"{path}: not a readable image ({e})") from e
  alpha = None
  if image.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
    # 16-bit (or 32-bit integer) gray: scale the used range to 8 bits.
    array = np.asarray(image, dtype=np.float64)
    scale = 65535.0 if array.max() > 255 else 255.0
    gray = np.clip(np.round(array / scale * 255.0), 0, 255).astype(np.uint8)
    return LoadedImage(np.repeat(gray[..., None], 3, axis=-1), None, fmt)
  if image.mode == "F":
    array = np.asarray(image, dtype=np.float64)
    gray = np.clip(np.round(array * (255.0 if array.max() <= 1.0 else 1.0)), 0, 255)
    return LoadedImage(np.repeat(gray.astype(np.uint8)[..., None], 3, axis=-1), None, fmt)
  if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba)[..., 3].copy()
    rgb = np.asarray(rgba.convert("RGB"))
  else:
    rgb = np.asarray(image.convert("RGB"))
  return LoadedImage(np.ascontiguousarray(rgb), alpha, fmt)


def save_image(path: str, rgb: np.ndarray, *, alpha: np.ndarray | None = None) -> None:
  """Writes uint8 RGB (plus alpha where the format keeps it); format from the extension."""
  image = Image.fromarray(rgb, "RGB")
  ext = os.path.splitext(path)[1].lower()
  fmt = Image.registered_extensions().get(ext)
  if fmt is None:
    raise MediaError(f"{path}: unknown image extension {ext!r}")
  if alpha is not None and fmt in _ALPHA_FORMATS:
    image.putalpha(Image.fromarray(alpha, "L"))
  options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
  with open(path, "wb") as f:
    image.save(f, format=fmt, **options)


# ---------------------------------------------------------------------------------------------
# Output files


def check_output(path: str, *, overwrite: bool) -> None:
  """Raises MediaError if `path` exists (without overwrite) or its folder cannot be written."""
  if os.path.exists(path) and not overwrite:
    raise MediaError(f"{path}: output exists (use --overwrite to replace it)")
  if os.path.isdir(path):
    raise MediaError(f"{path}: output is a directory")
  folder = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise MediaError(f"{path}: cannot create output folder ({e.strerror})") from e
  if not os.access(folder, os.W_OK):
    raise MediaError(f"{path}: output folder is not writable")


@contextlib.contextmanager
def atomic_output(path: str, *, overwrite: bool = False) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` only if the body succeeds.

  On any error the temporary file is removed, so the destination never holds a partial file.
  The temporary name keeps the extension so that ffmpeg and PIL pick the right format.
  """
  check_output(path, overwrite=overwrite)
  folder, name = os.path.split(os.path.abspath(path))
  stem, ext = os.path.splitext(name)
  try:
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{ext}", dir=folder)
  except OSError as e:
    raise MediaError(f"{path}: cannot write output ({e.strerror})") from e
  os.close(fd)
  try:
    yield tmp
    if os.path.exists(path) and not overwrite:  # appeared while we worked
      raise MediaError(f"{path}: output exists (use --overwrite to replace it)")
    os.replace(tmp, path)
  except OSError as e:
    raise MediaError(f"{path}: cannot write output ({describe_os_error(e)})") from e
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)


def describe_os_error(e: OSError) -> str:
  if e.errno == errno.ENOSPC:
    return "no space left on device"
  return e.strerror or str(e)


def sibling_temp(path: str, tag: str) -> str:
  """A fresh temporary file name beside `path` (same extension), created empty."""
  folder, name = os.path.split(os.path.abspath(path))
  stem, ext = os.path.splitext(name)
  fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".{tag}{ext}", dir=folder)
  os.close(fd)
  return tmp
