"""The ffmpeg binary (imageio-ffmpeg's), what a video file holds (parsed from `ffmpeg -i`,
displayed size) and ffmpeg's errors in one line (docs/video.md)."""

import dataclasses
import os
import re
import struct
import subprocess

import imageio_ffmpeg

from pix2pix_jax import files

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


def ffmpeg_exe() -> str:
  return imageio_ffmpeg.get_ffmpeg_exe()


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What `ffmpeg -i` says about a file's first video stream and its audio."""

  width: int
  height: int
  codec: str
  fps: float | None  # the stream's nominal rate, None when ffmpeg prints none
  duration: float | None  # seconds, None when unknown
  audio_codec: str | None  # None: no audio stream
  rotation: float | None = None  # the display matrix's rotation in degrees; None: no matrix
  pix_fmt: str | None = None  # e.g. "yuv420p10le"
  transfer: str | None = None  # colour transfer tag, e.g. "smpte2084"; None when untagged
  subtitle_codecs: tuple[str, ...] = ()  # e.g. ("subrip", "ass")
  chapters: int = 0
  metadata: tuple[tuple[str, str], ...] = ()  # the container's tags (title, ...), as printed

  @property
  def needs_remux(self) -> bool:
    """The output needs the source's audio, subtitles, chapters or tags added (writer.mux)."""
    tags = {key.lower() for key, _ in self.metadata} - _MUXER_TAGS
    return bool(self.audio_codec or self.subtitle_codecs or self.chapters or tags)

  @property
  def hdr(self) -> bool:
    """PQ (SMPTE 2084) or HLG (ARIB STD-B67) coded: needs tone mapping to SDR."""
    return self.transfer in HDR_TRANSFERS


# Larger frames are refused before decoding (a frame is decoded whole, a batch at a time, so a
# header declaring 16000x16000 would ask for gigabytes): 8192x8192 holds 8K UHD and DCI 8K.
MAX_FRAME_PIXELS = 8192 * 8192

_STREAM_RE = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio|Subtitle): (\w+)(.*)")
_CHAPTER_RE = re.compile(r"^    Chapter #\d+:\d+: start ", re.MULTILINE)
_TAG_RE = re.compile(r"^    (\S[^:]*?)\s*: (.*)$")
# Tags every muxer writes for itself: they alone are no reason to remux.
_MUXER_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder", "software"}
_SIZE_RE = re.compile(r", (\d{1,5})x(\d{1,5})[ ,\n]")
_FPS_RE = re.compile(r", ([\d.]+)(k?) fps")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")
# "yuv420p10le(tv, bt2020nc/bt2020/smpte2084, progressive)": pixel format, then range, colour
# space/primaries/transfer (one name where all three agree) and field order.
_PIX_FMT_RE = re.compile(r"^, (\w+)(?:\(([^)]*)\))?")
_ROTATION_RE = re.compile(r"[Dd]isplay ?[Mm]atrix: rotation of (-?[\d.]+) degrees")
HDR_TRANSFERS = ("smpte2084", "arib-std-b67")


def probe(path: str) -> VideoInfo:
  """Parses `ffmpeg -i`; raises MediaError for a missing, non-media or video-less file."""
  if not os.path.exists(path):
    raise files.MediaError(f"{path}: no such file")
  if os.path.isdir(path):
    raise files.MediaError(f"{path}: is a directory")
  proc = subprocess.run(
    [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path],
    capture_output=True,
    text=True,
    errors="replace",
    check=False,
  )
  text = proc.stderr
  if "Invalid data found" in text or "could not find codec parameters" in text.lower():
    raise files.MediaError(f"{path}: not a readable media file ({_probe_cause(text)})")
  if "Permission denied" in text:
    raise files.MediaError(f"{path}: permission denied")
  video = audio = None
  subtitles = []
  for match in _STREAM_RE.finditer(text):
    if match.group(1) == "Video" and video is None and "attached pic" not in match.group(3):
      video = match
    elif match.group(1) == "Audio" and audio is None:
      audio = match
    elif match.group(1) == "Subtitle":
      subtitles.append(match.group(2))
  if video is None:
    if "Stream #" in text:
      raise files.MediaError(f"{path}: has no video stream")
    raise files.MediaError(f"{path}: not a readable media file ({_probe_cause(text)})")
  rest = video.group(3) + "\n"
  size = _SIZE_RE.search(rest)
  if size is None:
    raise files.MediaError(f"{path}: video stream has no frame size (unsupported codec?)")
  width, height = int(size.group(1)), int(size.group(2))
  if width * height > MAX_FRAME_PIXELS:
    raise files.MediaError(
      f"{path}: declares {width}x{height} frames, over the {MAX_FRAME_PIXELS:,}-pixel limit"
    )
  # The stream's side data follows its line, up to the next stream.
  side_data = text[video.end() :].split("Stream #", 1)[0]
  rotation = _ROTATION_RE.search(side_data)
  degrees = float(rotation.group(1)) if rotation else None
  if degrees is not None and round(degrees / 90) % 2:
    width, height = height, width
  pix_fmt, transfer = _pixel_format(rest)
  fps = _FPS_RE.search(rest)
  fps_value = float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else None
  duration = _DURATION_RE.search(text)
  seconds = None
  if duration:
    h, m, s = duration.groups()
    seconds = int(h) * 3600 + int(m) * 60 + float(s)
  return VideoInfo(
    width=width,
    height=height,
    codec=video.group(2),
    fps=fps_value,
    duration=seconds,
    audio_codec=audio.group(2) if audio else None,
    rotation=degrees,
    pix_fmt=pix_fmt,
    transfer=transfer,
    subtitle_codecs=tuple(subtitles),
    chapters=len(_CHAPTER_RE.findall(text.split("Stream #", 1)[0])),
    metadata=_global_metadata(text),
  )


def _global_metadata(text: str) -> tuple[tuple[str, str], ...]:
  """The input's own tags: the "  Metadata:" block after "Input #0" (before "Duration:")."""
  lines = text.split("Input #0", 1)[-1].splitlines()[1:]
  if not lines or lines[0] != "  Metadata:":
    return ()
  tags = []
  for line in lines[1:]:
    match = _TAG_RE.match(line)
    if match is None:
      break
    tags.append((match.group(1), match.group(2)))
  return tuple(tags)


def _pixel_format(rest: str) -> tuple[str | None, str | None]:
  """(pixel format, transfer tag) from the text after a video stream's codec name."""
  codec_details = re.sub(r"^ \([^)]*\)( \([^)]*\))?", "", rest)  # "(High 10) (avc1 / 0x...)"
  match = _PIX_FMT_RE.search(codec_details)
  if match is None:
    return None, None
  transfer = None
  for item in (match.group(2) or "").split(", "):
    names = item.split("/")
    if len(names) == 3:
      transfer = names[2]
    elif item in HDR_TRANSFERS or item in ("bt709", "bt2020"):  # one name for all three
      transfer = item
  return match.group(1), None if transfer == "unknown" else transfer


def _probe_cause(text: str) -> str:
  """The demuxer's own complaint (e.g. "moov atom not found"), else the last line."""
  causes = [
    line.split("] ", 1)[1].strip()
    for line in text.splitlines()
    if line.startswith("[")
    and "] " in line
    and "@ 0x" in line
    and "Error opening input" not in line  # ffmpeg's generic follow-up, not the cause
  ]
  return causes[-1] if causes else last_line(text)


def last_line(text: str) -> str:
  """The last non-empty line of ffmpeg's stderr, for error messages."""
  lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
  return lines[-1] if lines else "no message"


def ffmpeg_cause(stderr: str) -> str:
  """Why an ffmpeg run failed, in a few words: "no space left on device", else the last line."""
  if "No space left on device" in stderr:
    return "no space left on device"
  return last_line(stderr)


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
    raise files.MediaError(f"{path}: cannot decode ({last_line(proc.stderr)})")
  return int(frames[-1])


# MP4/MOV boxes that hold the sample tables, and the boxes a file of that family starts with.
_MP4_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")
_MP4_FIRST = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide")
_MP4_MAX_BOXES = 10_000


def declared_frames(path: str) -> int | None:
  """The largest frame count an MP4/MOV video track declares in its sample table (stts); None
  for other containers or an unreadable table. decord sizes its index by this count without
  checking it (a file declaring 2e9 frames aborts the process), so it is read first."""
  try:
    with open(path, "rb") as f:
      end = os.fstat(f.fileno()).st_size
      first = next(_boxes(f, 0, end), None)
      if first is None or first[0] not in _MP4_FIRST:
        return None
      return _largest_stts(f, 0, end, depth=0)
  except (OSError, struct.error):
    return None


def _boxes(f, start: int, end: int):
  """(type, body start, end) of the boxes between `start` and `end`."""
  pos = start
  for _ in range(_MP4_MAX_BOXES):
    if pos + 8 > end:
      return
    f.seek(pos)
    size, kind = struct.unpack(">I4s", f.read(8))
    header = 8
    if size == 1:
      (size,) = struct.unpack(">Q", f.read(8))
      header = 16
    elif size == 0:
      size = end - pos
    if size < header:
      return
    yield kind, pos + header, min(pos + size, end)
    pos += size


def _largest_stts(f, start: int, end: int, *, depth: int) -> int | None:
  largest = None
  for kind, body, stop in _boxes(f, start, end):
    if kind == b"trak" and _handler(f, body, stop) != b"vide":
      continue  # audio, subtitles, ...
    if kind in _MP4_CONTAINERS and depth < len(_MP4_CONTAINERS):
      found = _largest_stts(f, body, stop, depth=depth + 1)
    elif kind == b"stts" and stop - body >= 8:
      f.seek(body + 4)  # version and flags
      (entries,) = struct.unpack(">I", f.read(4))
      entries = min(entries, (stop - body - 8) // 8)
      found = sum(struct.unpack(f">{2 * entries}I", f.read(8 * entries))[::2])
    else:
      continue
    if found is not None:
      largest = max(largest or 0, found)
  return largest


def _handler(f, start: int, end: int) -> bytes | None:
  """A track's handler type (b"vide", b"soun", ...) from its mdia/hdlr box."""
  for kind, body, stop in _boxes(f, start, end):
    if kind == b"mdia":
      for inner, inner_body, _ in _boxes(f, body, stop):
        if inner == b"hdlr":
          f.seek(inner_body + 8)  # version, flags, pre_defined
          return f.read(4)
  return None
