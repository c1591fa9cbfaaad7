"""Video colourisation on real clips made by ffmpeg: counts, rates, sizes, audio, luminance."""

import json
import os
import re
import subprocess
import sys
import time
import types

import decord
import numpy as np
import pytest
from helpers import (
  CLIP_CASES,
  check_output,
  decode,
  ffmpeg,
  make_clip,
  make_vfr_clip,
  tiny_generator_workdir,
)

from pix2pix_jax import files
from pix2pix_jax.colorize import main as colorize
from pix2pix_jax.colorize.video import probe, sample_clip, source, writer
from pix2pix_jax.colorize.video.clip import colorize_video

LOSSLESS_ISH = writer.EncodeOptions(crf=8)


@pytest.mark.parametrize("name", sorted(CLIP_CASES))
def test_containers_and_codecs(colorizer, tmp_path, name):
  src = make_clip(str(tmp_path / name), **CLIP_CASES[name])
  dst = str(tmp_path / "out" / name)
  # A low CRF: the sharp test pattern at 64x48 loses ~38 dB of lightness PSNR to CRF 18 alone;
  # the pipeline itself is exact (see colorizer_test), the sample clip test uses the defaults.
  result = colorize_video(colorizer, src, dst, encode=LOSSLESS_ISH, progress=False)
  check_output(src, dst, result)
  if CLIP_CASES[name].get("audio") in ("aac", "libopus", "libvorbis", "pcm_s16le"):
    assert result.audio == "copied"
    assert probe.probe(dst).audio_codec == probe.probe(src).audio_codec


def test_odd_h264_keeps_size(colorizer, tmp_path):
  src = make_clip(str(tmp_path / "odd.mkv"), size="65x49", vcodec="libvpx-vp9")
  dst = str(tmp_path / "odd_out.mp4")
  colorize_video(colorizer, src, dst, progress=False)
  info = probe.probe(dst)
  assert (info.codec, info.width, info.height) == ("h264", 65, 49)


def test_variable_frame_rate(colorizer, tmp_path):
  src = make_vfr_clip(str(tmp_path / "vfr.mp4"))
  assert source.is_variable_rate(decord.VideoReader(src, ctx=decord.cpu(0)))
  dst = str(tmp_path / "vfr_out.mp4")
  result = colorize_video(colorizer, src, dst, encode=LOSSLESS_ISH, progress=False)
  check_output(src, dst, result)
  # Constant rate at the average: the duration is kept.
  assert probe.probe(dst).duration == pytest.approx(probe.probe(src).duration, abs=0.1)


@pytest.mark.parametrize("clip", ["h264_aac", "vfr"])
def test_clips_over_decords_budget_come_from_the_ffmpeg_pipe(
  colorizer, tmp_path, monkeypatch, clip
):
  if clip == "vfr":
    src = make_vfr_clip(str(tmp_path / "vfr.mp4"))
  else:
    src = make_clip(str(tmp_path / "c.mp4"), audio="aac")
  frames = probe.count_frames(src)
  monkeypatch.setattr(source, "DECORD_MAX_DECODED_BYTES", frames * 64 * 48 * 3 - 1)
  dst = str(tmp_path / "out.mp4")
  result = colorize_video(colorizer, src, dst, encode=LOSSLESS_ISH, progress=False)
  assert result.decoder == "ffmpeg"
  check_output(src, dst, result)
  assert probe.probe(dst).duration == pytest.approx(probe.probe(src).duration, abs=0.1)
  monkeypatch.setattr(source, "DECORD_MAX_DECODED_BYTES", frames * 64 * 48 * 3)
  result = colorize_video(colorizer, src, dst, overwrite=True, progress=False)
  assert result.decoder == "decord"


def test_one_frame_video(colorizer, tmp_path):
  src = make_clip(str(tmp_path / "one.mp4"), extra=("-frames:v", "1"))
  dst = str(tmp_path / "one_out.mp4")
  result = colorize_video(colorizer, src, dst, encode=LOSSLESS_ISH, progress=False)
  assert result.frames == 1
  check_output(src, dst, result)


def test_smoothing_and_consistency(colorizer, tmp_path):
  src = sample_clip.make_sample_clip(str(tmp_path / "s.mp4"), seconds=2, fps=10, size=(64, 48))
  plain = colorize_video(
    colorizer, src, str(tmp_path / "a.mp4"), consistency=True, smoothing=0.0, progress=False
  )
  smooth = colorize_video(
    colorizer,
    src,
    str(tmp_path / "b.mp4"),
    consistency=True,
    smoothing=0.8,
    encode=LOSSLESS_ISH,
    progress=False,
  )
  for r in (plain, smooth):
    assert 0.0 <= r.consistency_out <= 1.0 and 0.0 <= r.consistency_in <= 1.0
  assert smooth.scene_cuts == 2  # three photos, two hard cuts
  assert smooth.consistency_out > plain.consistency_out
  assert smooth.consistency_in == plain.consistency_in
  check_output(src, str(tmp_path / "b.mp4"), smooth)


def test_make_sample_clip(tmp_path):
  path = sample_clip.make_sample_clip(str(tmp_path / "s.mp4"), seconds=1.2, fps=10, size=(40, 30))
  info = probe.probe(path)
  assert (info.width, info.height, info.audio_codec) == (40, 30, "aac")
  assert probe.count_frames(path) == 12
  silent = sample_clip.make_sample_clip(
    str(tmp_path / "s.webm"), seconds=1, fps=5, size=32, audio=False
  )
  assert probe.probe(silent).audio_codec is None and probe.probe(silent).codec == "vp9"


def test_reader_reopen_gives_the_same_frames(tmp_path):
  src = make_clip(str(tmp_path / "c.mp4"), seconds=0.8)
  once = np.concatenate(list(source.iter_chunks(src, 3, reopen_every=0)))
  reopened = np.concatenate(list(source.iter_chunks(src, 3, reopen_every=1)))
  np.testing.assert_array_equal(once, reopened)
  assert len(once) == 20


class _StallingReader:
  """A real decord reader whose get_batch hangs, as decord does on some files."""

  def __init__(self, path):
    self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)

  def __len__(self):
    return len(self._reader)

  def get_batch(self, indices):
    time.sleep(3)
    return self._source.get_batch(indices)


def test_stalled_decoder_raises(tmp_path):
  src = make_clip(str(tmp_path / "c.mp4"), seconds=0.2)
  with pytest.raises(files.MediaError, match="stalled"):
    list(source.iter_chunks(src, 2, timeout=0.5, reader=_StallingReader(src)))


def test_truncated_video_keeps_decodable_frames(colorizer, tmp_path):
  src = make_clip(
    str(tmp_path / "full.mp4"), seconds=2, extra=("-g", "5", "-movflags", "+faststart")
  )
  data = open(src, "rb").read()
  cut = str(tmp_path / "cut.mp4")
  with open(cut, "wb") as f:
    f.write(data[: len(data) * 2 // 3])
  decodable = probe.count_frames(cut)
  assert 0 < decodable < 50
  result = colorize_video(colorizer, cut, str(tmp_path / "o.mp4"), progress=False)
  assert result.frames == probe.count_frames(str(tmp_path / "o.mp4"))
  assert abs(result.frames - decodable) <= 5


@pytest.mark.parametrize("case", ["missing", "text", "audio_only", "no_frames_data"])
def test_bad_inputs_leave_no_output(colorizer, tmp_path, case):
  src = str(tmp_path / f"{case}.mp4")
  if case == "text":
    open(src, "w").write("hello\n" * 100)
  elif case == "audio_only":
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", src)
  elif case == "no_frames_data":
    data = open(make_clip(str(tmp_path / "x.mp4"), extra=("-movflags", "+faststart")), "rb")
    open(src, "wb").write(data.read()[:2500])
  dst = str(tmp_path / "out" / "o.mp4")
  with pytest.raises(files.MediaError, match=os.path.basename(src)):
    colorize_video(colorizer, src, dst, progress=False)
  assert not os.path.exists(os.path.dirname(dst)) or not os.listdir(os.path.dirname(dst))


def test_existing_output_is_kept(colorizer, tmp_path):
  src = make_clip(str(tmp_path / "c.mp4"), seconds=0.2)
  dst = tmp_path / "o.mp4"
  dst.write_bytes(b"precious")
  with pytest.raises(files.MediaError, match="exists"):
    colorize_video(colorizer, src, str(dst), progress=False)
  assert dst.read_bytes() == b"precious"
  colorize_video(colorizer, src, str(dst), overwrite=True, progress=False)
  assert probe.count_frames(str(dst)) == 5


def test_impossible_codec_for_container(colorizer, tmp_path):
  src = make_clip(str(tmp_path / "c.mp4"), seconds=0.2)
  with pytest.raises(files.MediaError, match="webm"):
    colorize_video(
      colorizer,
      src,
      str(tmp_path / "o.webm"),
      encode=writer.EncodeOptions(codec="h264"),
      progress=False,
    )
  assert not os.path.exists(tmp_path / "o.webm")


# Runs in a fresh interpreter where `import decord` fails, as where decord is not installed.
_WITHOUT_DECORD = """
import dataclasses, json, sys
sys.modules["decord"] = None  # makes `import decord` raise ImportError
import pix2pix_jax.colorize.video
loaded = {name for name, module in sys.modules.items() if module is not None}
assert not loaded & {"decord", "jax", "tensorflow"}, loaded & {"decord", "jax", "tensorflow"}
from helpers import make_colorizer, tiny_config
from pix2pix_jax.colorize.video import probe, source, writer
from pix2pix_jax.colorize.video.clip import colorize_video
src, dst = sys.argv[1:]
assert source.choose_backend(src, probe.probe(src)) == ("ffmpeg", None)
colorizer = make_colorizer(tiny_config(), batch_size=4)
options = writer.EncodeOptions(crf=8)
result = colorize_video(colorizer, src, dst, encode=options, progress=False)
print(json.dumps(dataclasses.asdict(result)))
"""


@pytest.mark.integration
def test_without_decord_clips_come_from_the_ffmpeg_pipe(tmp_path):
  src = make_clip(str(tmp_path / "c.mp4"), audio="aac")
  dst = str(tmp_path / "out" / "c.mp4")
  tests = os.path.dirname(os.path.abspath(__file__))
  proc = subprocess.run(
    [sys.executable, "-c", _WITHOUT_DECORD, src, dst],
    capture_output=True,
    text=True,
    cwd=tests,
    env={**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])},
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr
  result = types.SimpleNamespace(**json.loads(proc.stdout.strip().splitlines()[-1]))
  assert (result.decoder, result.audio) == ("ffmpeg", "copied")
  assert (result.width, result.height, result.frames) == (64, 48, 25)
  check_output(src, dst, result)


# --- Windows (--start/--duration) and the streams kept beside the video ---------------------

LOSSLESS = writer.EncodeOptions(crf=0, pix_fmt="yuv444p")  # x264 lossless: pixels compare exactly


def make_noisy_clip(path, seconds=3):
  """64x48 H.264 at 25 fps (a keyframe every 12 frames) with AAC; temporal noise makes every
  frame distinct, so a frame's pixels say which frame it is."""
  ffmpeg(
    "-f", "lavfi", "-i", f"testsrc2=size=64x48:rate=25:duration={seconds},noise=alls=40:allf=t",
    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
    "-c:v", "libx264", "-g", "12", "-c:a", "aac", path,
  )  # fmt: skip
  return path


def frame_times(path):
  """The video frames' presentation times in seconds, as ffmpeg's showinfo prints them."""
  cmd = [probe.ffmpeg_exe(), "-hide_banner", "-i", path, "-map", "0:v:0", "-vf", "showinfo"]
  text = subprocess.run([*cmd, "-f", "null", "-"], capture_output=True, text=True).stderr
  return [float(t) for t in re.findall(r"pts_time:([-\d.e]+)", text)]


def audio_seconds(path):
  """Decoded audio length in seconds (samples at 44.1 kHz)."""
  cmd = [probe.ffmpeg_exe(), "-v", "error", "-i", path, "-map", "0:a:0", "-ac", "1", "-ar"]
  cmd += ["44100", "-f", "s16le", "-"]
  return len(subprocess.run(cmd, check=True, capture_output=True).stdout) / 2 / 44100


@pytest.fixture(scope="module")
def noisy(tmp_path_factory, colorizer):
  """The noisy clip, and the frames of a lossless, unsmoothed run over all of it."""
  folder = tmp_path_factory.mktemp("noisy")
  src = make_noisy_clip(str(folder / "n.mp4"))
  full = str(folder / "full.mkv")
  colorize_video(colorizer, src, full, encode=LOSSLESS, smoothing=0.0, progress=False)
  return src, decode(full)


@pytest.mark.parametrize(
  "start, duration",
  # On frames, between frames (where ffmpeg's input -t alone would take one frame more: it
  # counts from the first frame kept), a one-frame window, and one running past the end.
  [(0.4, 0.4), (0.41, 0.39), (0.399, 0.401), (1.0, 1.0), (0.0, 0.04), (2.5, 5.0)],
)
def test_window_holds_exactly_the_frames_of_its_span(colorizer, noisy, tmp_path, start, duration):
  src, full = noisy
  times = frame_times(src)
  assert times == pytest.approx([k / 25 for k in range(75)])  # the set-up: frames at k/25 s
  expected = [k for k, t in enumerate(times) if start <= t < start + duration]
  first = expected[0]
  dst = str(tmp_path / "w.mp4")
  result = colorize_video(
    colorizer, src, dst, encode=LOSSLESS, smoothing=0.0, window=(start, duration), progress=False
  )
  out = decode(dst)
  assert result.frames == len(out) == probe.count_frames(dst) == len(expected)
  # The output's frames are the full run's frames of the same span (x264 lossless both times).
  assert np.abs(out.astype(int) - full[first : first + len(out)]).max() <= 1
  # Audio cut to the window (the clip's 3 s of audio end it early), within one AAC frame (1024
  # samples): copied into MP4 (an edit list cuts it), decoded, cut and re-encoded into Matroska.
  audio = min(duration, 3.0 - start)
  assert result.audio == "copied"
  assert abs(audio_seconds(dst) - audio) <= 1024 / 44100
  mkv = str(tmp_path / "w.mkv")
  result = colorize_video(
    colorizer, src, mkv, encode=LOSSLESS, smoothing=0.0, window=(start, duration), progress=False
  )
  assert result.frames == len(expected) and result.audio == "re-encoded (aac, cut to the window)"
  assert abs(audio_seconds(mkv) - audio) <= 1024 / 44100


def test_window_from_the_command_line(noisy, tmp_path, capsys):
  src, _ = noisy
  workdir = tiny_generator_workdir(tmp_path / "run")
  dst = tmp_path / "preview.mp4"
  args = ["--workdir", workdir, src, "-o", str(dst), "--quiet"]
  assert colorize.main([*args, "--start", "00:00:01.000", "--duration", "0.5"]) == 0
  assert "13 frames 64x48" in capsys.readouterr().out  # 1.00, 1.04, ..., 1.48 s
  assert probe.count_frames(str(dst)) == 13
  # Past the end: one line naming the file and the cause, exit 1, nothing written.
  late = tmp_path / "late.mp4"
  assert colorize.main(["--workdir", workdir, src, "-o", str(late), "--start", "4"]) == 1
  err = capsys.readouterr().err
  assert f"error: {src}: the window starts at 4 s, past the end of the clip (3 s)" in err
  assert not late.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".late")]
  for bad in (["--start", "1:75"], ["--duration", "0"], ["--start", "-1"]):
    with pytest.raises(SystemExit) as e:
      colorize.main([*args, *bad])
    assert e.value.code == 2


SRT = "1\n00:00:00,500 --> 00:00:01,500\nHello\n\n2\n00:00:02,000 --> 00:00:02,800\nWorld\n"
FFMETADATA = """;FFMETADATA1
title=Archive film
artist=Someone

[CHAPTER]
TIMEBASE=1/1000
START=0
END=1500
title=Opening

[CHAPTER]
TIMEBASE=1/1000
START=1500
END=3000
title=Ending
"""


def make_archive_clip(path, tmp_path, *, audio=True):
  """3 s Matroska: H.264, AAC (when `audio`), an English SRT subtitle stream, two chapters
  (Opening, Ending) and the title "Archive film"."""
  clip = make_clip(str(tmp_path / "plain.mp4"), seconds=3, audio="aac" if audio else None)
  (tmp_path / "s.srt").write_text(SRT)
  (tmp_path / "meta.txt").write_text(FFMETADATA)
  ffmpeg(
    "-i", clip, "-i", str(tmp_path / "s.srt"), "-i", str(tmp_path / "meta.txt"),
    "-map", "0", "-map", "1", "-map_metadata", "2", "-map_chapters", "2",
    "-c", "copy", "-c:s", "srt", "-metadata:s:s:0", "language=eng", path,
  )  # fmt: skip
  return path


def ffmpeg_i(path):
  """What `ffmpeg -i` prints about a file (streams, chapters, tags)."""
  cmd = [probe.ffmpeg_exe(), "-hide_banner", "-i", path]
  return subprocess.run(cmd, capture_output=True, text=True).stderr


def subtitle_events(path):
  """The subtitle texts of a file, converted to SRT by ffmpeg."""
  cmd = [probe.ffmpeg_exe(), "-v", "error", "-i", path, "-map", "0:s:0", "-f", "srt", "-"]
  return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize(
  "name, subtitles, codec",
  [
    ("o.mkv", "copied", "subrip"),
    ("o.mp4", "converted (mov_text)", "mov_text"),  # MP4 holds text subtitles as mov_text
    ("o.webm", "converted (webvtt)", "webvtt"),  # WebM holds WebVTT only
    ("o.avi", "dropped (.avi output holds no subtitle streams)", None),
  ],
)
def test_subtitles_chapters_and_title_are_kept(colorizer, tmp_path, name, subtitles, codec):
  src = make_archive_clip(str(tmp_path / "film.mkv"), tmp_path)
  info = probe.probe(src)
  assert (info.subtitle_codecs, info.chapters) == (("subrip",), 2)  # the set-up works
  assert ("title", "Archive film") in info.metadata
  dst = str(tmp_path / "out" / name)
  result = colorize_video(colorizer, src, dst, progress=False)
  assert result.subtitles == subtitles and result.frames == probe.count_frames(dst) == 75
  out = probe.probe(dst)
  assert out.subtitle_codecs == ((codec,) if codec else ())
  assert {k.lower(): v for k, v in out.metadata}["title"] == "Archive film"
  assert out.audio_codec == ("opus" if name == "o.webm" else "aac")
  text = ffmpeg_i(dst)
  if name != "o.avi":  # AVI has no chapters
    assert out.chapters == 2 and "Opening" in text and "Ending" in text
    assert "(eng)" in [line for line in text.splitlines() if "Subtitle:" in line][0]
    assert "Hello" in subtitle_events(dst) and "World" in subtitle_events(dst)
  assert result.summary().count(f"subtitles {subtitles}") == 1


def test_kept_streams_are_cut_to_a_window(colorizer, tmp_path):
  src = make_archive_clip(str(tmp_path / "film.mkv"), tmp_path)
  dst = str(tmp_path / "w.mkv")
  result = colorize_video(colorizer, src, dst, window=(1.0, 1.5), progress=False)
  assert result.frames == probe.count_frames(dst) == 38  # 1.00 .. 2.48 s
  out = probe.probe(dst)
  assert (out.subtitle_codecs, out.chapters) == (("subrip",), 2)
  # "World" (2.0 s) moves to 1.0 s; "Hello" (0.5-1.5 s) began before the window: left out.
  assert "00:00:01,000 --> 00:00:01,800\nWorld" in subtitle_events(dst)
  assert "Hello" not in subtitle_events(dst)
  text = ffmpeg_i(dst)
  assert "Chapter #0:0: start 0.000000, end 0.500000" in text  # Opening ends at 1.5 s
  assert "Chapter #0:1: start 0.500000" in text
  assert result.audio == "re-encoded (aac, cut to the window)"
  assert abs(audio_seconds(dst) - 1.5) <= 1024 / 44100


def test_a_silent_clip_keeps_its_subtitles_and_title(colorizer, tmp_path):
  src = make_archive_clip(str(tmp_path / "film.mkv"), tmp_path, audio=False)
  assert probe.probe(src).needs_remux and probe.probe(src).audio_codec is None
  dst = str(tmp_path / "o.mkv")
  result = colorize_video(colorizer, src, dst, progress=False)
  assert (result.audio, result.subtitles) == ("none", "copied")
  out = probe.probe(dst)
  assert out.audio_codec is None and out.subtitle_codecs == ("subrip",) and out.chapters == 2
  assert ("title", "Archive film") in out.metadata
