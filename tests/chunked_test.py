"""Long clips in chunks (--workers, --chunk-seconds): joins equal a serial run, and a killed run
resumes from its finished chunks. Real clips made by ffmpeg, lossless (FFV1 RGB) outputs."""

import os
import re
import signal
import time

import numpy as np
import pytest
from helpers import (
  check_output,
  decode,
  ffmpeg,
  make_clip,
  make_colorizer,
  start_colorize,
  tiny_config,
  tiny_generator_workdir,
)

from pix2pix_jax.colorize.video import (
  chunk_files,
  chunk_plan,
  probe,
  source,
  temporal,
  writer,
)
from pix2pix_jax.colorize.video.clip import colorize_video

LOSSLESS = writer.EncodeOptions(codec="ffv1", pix_fmt="gbrp")


def make_cut_clip(path, seconds=6, cut=1.6):
  """64x48 H.264 + AAC at 25 fps: testsrc2, then a scene cut to a mandelbrot at `cut` s."""
  ffmpeg(
    "-f", "lavfi", "-i", f"testsrc2=size=64x48:rate=25:duration={cut}",
    "-f", "lavfi", "-i", "mandelbrot=size=64x48:rate=25",
    "-f", "lavfi", "-i", f"sine=duration={seconds}",
    "-filter_complex",
    f"[1]trim=duration={seconds - cut},setpts=PTS-STARTPTS[m];[0][m]concat=n=2:v=1[v]",
    "-map", "[v]", "-map", "2:a", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", path,
  )  # fmt: skip
  return path


@pytest.mark.parametrize("backend", ["decord", "ffmpeg"])
def test_chunked_run_equals_serial_run(colorizer, tmp_path, monkeypatch, backend):
  if backend == "ffmpeg":
    monkeypatch.setattr(source, "DECORD_MAX_DECODED_BYTES", 0)
  # The cut (frame 40) lies in the head of the chunk at frame 25 (20 frames at 0.7).
  src = make_cut_clip(str(tmp_path / "cut.mp4"))
  serial_dst, chunked_dst = str(tmp_path / "serial.mkv"), str(tmp_path / "out" / "chunked.mkv")
  options = dict(encode=LOSSLESS, progress=False, consistency=True)
  serial = colorize_video(colorizer, src, serial_dst, **options)
  notes = []
  result = colorize_video(
    colorizer, src, chunked_dst, workers=3, chunk_seconds=1.0, note=notes.append, **options
  )
  assert (result.chunks, result.resumed, result.workers, result.decoder) == (6, 0, 3, backend)
  assert notes == []
  check_output(src, chunked_dst, result)
  assert os.listdir(tmp_path / "out") == ["chunked.mkv"]  # the chunk folder is gone
  a, b = decode(serial_dst), decode(chunked_dst)
  assert a.shape == b.shape == (150, 48, 64, 3)
  # Equal up to rounding: a chunk's body starts < 1/1024 of the chroma range off.
  assert np.abs(a.astype(np.int16) - b).max() <= 1
  assert np.mean(a != b) < 0.01
  assert source.packet_times(chunked_dst) == source.packet_times(serial_dst)  # timestamps
  assert result.scene_cuts == serial.scene_cuts == 1
  assert result.consistency_out == pytest.approx(serial.consistency_out, abs=1e-4)
  assert result.consistency_in == pytest.approx(serial.consistency_in, abs=1e-6)


@pytest.mark.parametrize(
  "name, clip",
  [
    ("ntsc.mp4", dict(rate="30000/1001", audio="aac")),
    ("vp9_odd_opus.mkv", dict(size="65x49", vcodec="libvpx-vp9", audio="libopus")),
    ("vp8.webm", dict(size="48x36", vcodec="libvpx", audio="libvorbis", rate=24)),
  ],
)
def test_chunked_containers_through_the_ffmpeg_pipe(colorizer, tmp_path, monkeypatch, name, clip):
  monkeypatch.setattr(source, "DECORD_MAX_DECODED_BYTES", 0)
  src = make_clip(str(tmp_path / name), seconds=3, **clip)
  serial_dst, chunked_dst = str(tmp_path / "serial.mkv"), str(tmp_path / "chunked.mkv")
  colorize_video(colorizer, src, serial_dst, encode=LOSSLESS, progress=False)
  result = colorize_video(
    colorizer, src, chunked_dst, workers=2, chunk_seconds=0.7, encode=LOSSLESS, progress=False
  )
  assert result.chunks == 5 and result.audio == "copied"
  check_output(src, chunked_dst, result)
  a, b = decode(serial_dst), decode(chunked_dst)
  assert a.shape == b.shape and np.abs(a.astype(np.int16) - b).max() <= 1
  assert source.packet_times(chunked_dst) == source.packet_times(serial_dst)


def test_unsplittable_short_and_one_worker_clips_run_serially(colorizer, tmp_path, monkeypatch):
  monkeypatch.setattr(source, "DECORD_MAX_DECODED_BYTES", 0)
  ts = str(tmp_path / "a.ts")
  ffmpeg("-i", make_clip(str(tmp_path / "a.mp4"), seconds=3, audio="aac"), "-c", "copy", ts)
  notes = []
  result = colorize_video(
    colorizer, ts, str(tmp_path / "a_out.ts"), workers=2, chunk_seconds=1.0, note=notes.append,
    progress=False,
  )  # fmt: skip
  assert result.chunks == 1 and result.frames == 75
  assert notes == [
    f"{ts}: colourising in one piece: its container (.ts) does not seek frame exactly"
  ]
  for workers, seconds in ((1, None), (4, 5.0)):  # one worker, or a clip shorter than a chunk
    dst = str(tmp_path / f"b{workers}.mp4")
    result = colorize_video(
      colorizer, str(tmp_path / "a.mp4"), dst, workers=workers, chunk_seconds=seconds,
      progress=False,
    )  # fmt: skip
    assert result.chunks == 1 and result.frames == 75


def test_warmup_converges_below_a_255th_and_heads_are_whole_batches():
  for strength in (0.3, 0.7, 0.9, 0.99):
    n = temporal.warmup_frames(strength)
    assert strength**n <= 1 / 1024 < strength ** (n - 1)
  assert temporal.warmup_frames(0.7) == 20 and temporal.warmup_frames(0.0) == 0
  assert temporal.head_frames(0.7, 8) == 24 and temporal.head_frames(0.7, 4) == 20
  plan = chunk_plan.plan_chunks(100, 30, 24)
  assert [(c.start, c.body, c.end) for c in plan] == [
    (0, 0, 30), (30, 54, 60), (60, 84, 90), (90, 100, 100)
  ]  # fmt: skip


def test_default_chunks_depend_on_the_clip_only():
  assert chunk_plan.default_chunk_seconds(120) == 5.0  # 24 chunks
  assert chunk_plan.default_chunk_seconds(600) == 12.5  # 48 chunks
  assert chunk_plan.default_chunk_seconds(7200) == 60.0  # 120 chunks


def test_default_workers_follow_cores_devices_and_memory():
  gib = 1 << 30

  def workers(**kw):
    return chunk_plan.default_workers(1920, 1080, 8, **kw)

  assert workers(cores=2, accelerators=0, memory_bytes=16 * gib) == 1
  assert workers(cores=16, accelerators=0, memory_bytes=64 * gib) == 4
  assert workers(cores=16, accelerators=1, memory_bytes=256 * gib) == 8
  assert workers(cores=4, accelerators=8, memory_bytes=256 * gib) == 8  # one per device
  assert workers(cores=64, accelerators=1, memory_bytes=512 * gib) == chunk_plan.MAX_DEFAULT_WORKERS
  per = chunk_plan.pipeline_bytes(1920, 1080, 8)
  assert workers(cores=16, accelerators=1, memory_bytes=6 * per) == 3  # half the memory
  assert workers(cores=16, accelerators=1, memory_bytes=per) == 1  # never 0
  assert (
    chunk_plan.default_workers(3840, 2160, 8, cores=16, accelerators=1, memory_bytes=8 * per) < 8
  )


def test_fingerprint_changes_with_model_settings_and_source(colorizer, tmp_path):
  src = make_clip(str(tmp_path / "a.mp4"))
  clip_source = source.open_source(src, probe.probe(src))
  settings = {"smoothing": 0.7, "encode": ("auto", None)}
  base = chunk_files.fingerprint(colorizer, clip_source, settings)
  assert chunk_files.fingerprint(colorizer, clip_source, dict(settings)) == base
  assert chunk_files.fingerprint(colorizer, clip_source, {**settings, "smoothing": 0.8}) != base
  other = make_colorizer(tiny_config(**{"model.ngf": 8}), batch_size=4)
  assert chunk_files.fingerprint(other, clip_source, settings) != base
  os.utime(src, ns=(0, 0))
  assert chunk_files.fingerprint(colorizer, clip_source, settings) != base


# ---------------------------------------------------------------------------------------------
# Resume after SIGKILL and SIGTERM, as a user runs it


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_generator_workdir(tmp_path_factory.mktemp("run"))


def start(workdir, src, dst, *extra):
  return start_colorize(workdir, src, dst, "--codec", "ffv1", "--pix-fmt", "gbrp", *extra)


def finished_chunks(dst):
  """The finished chunks' state files (written last: chunk_files.py)."""
  folder = chunk_files.chunk_folder(dst)
  names = os.listdir(folder) if os.path.isdir(folder) else []
  return sorted(n for n in names if n.endswith(chunk_files.STATE))


def chunk_files_of(dst, finished):
  """All files of the finished chunks (state, head, body) in the chunk folder."""
  stems = {n[: -len(chunk_files.STATE)] for n in finished}
  folder = chunk_files.chunk_folder(dst)
  return sorted(n for n in os.listdir(folder) if n.split(".")[0] in stems)


def stop_after_chunks(proc, dst, count, signum):
  """Sends `signum` once `count` more chunks than now are finished (polled, no fixed sleep)."""
  target = len(finished_chunks(dst)) + count
  deadline = time.monotonic() + 300
  while len(finished_chunks(dst)) < target:
    assert proc.poll() is None, proc.communicate()
    assert time.monotonic() < deadline
    time.sleep(0.01)
  proc.send_signal(signum)
  return proc.communicate(timeout=120)


@pytest.mark.integration
def test_killed_chunked_run_resumes_from_finished_chunks(workdir, tmp_path):
  src = make_clip(str(tmp_path / "film.mp4"), seconds=16, audio="aac")  # 400 frames, 8 chunks
  dst = str(tmp_path / "out" / "film.mkv")
  args = ("--workers", "2", "--chunk-seconds", "2")

  # SIGKILL: finished chunks stay, nothing in the output's place.
  proc = start(workdir, src, dst, *args)
  stop_after_chunks(proc, dst, 1, signal.SIGKILL)
  assert proc.returncode == -signal.SIGKILL
  assert not os.path.exists(dst)
  kept = finished_chunks(dst)
  assert 1 <= len(kept) < 8
  kept_files = chunk_files_of(dst, kept)
  # A state, a body and, but for the first chunk, a head.
  assert len(kept_files) == sum(2 if n.split("-")[1] == "000000000" else 3 for n in kept)
  stamps = {n: os.stat(os.path.join(chunk_files.chunk_folder(dst), n)).st_ino for n in kept_files}

  # SIGTERM on the same command: it reuses the kept chunks (untouched), finishes at least one
  # more, and keeps them all; the chunk it was encoding is removed.
  proc = start(workdir, src, dst, *args)
  stdout, stderr = stop_after_chunks(proc, dst, 1, signal.SIGTERM)
  assert proc.returncode == 128 + signal.SIGTERM, stderr
  assert f"resumed {len(kept)} of 8 chunks" in stdout
  folder = chunk_files.chunk_folder(dst)
  now = finished_chunks(dst)
  assert set(kept) < set(now) and not os.path.exists(dst)
  assert {n: os.stat(os.path.join(folder, n)).st_ino for n in kept_files} == stamps
  assert sorted(os.listdir(folder)) == chunk_files_of(dst, now)  # nothing half-written left

  # Once more to the end: only the rest is colourised; the folder is removed after the join.
  proc = start(workdir, src, dst, *args)
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stderr
  assert re.search(rf"resumed {len(now)} of 8 chunks", stdout), stdout
  assert "400 frames 64x48 @ 25.000 fps, audio copied" in stdout
  assert sorted(os.listdir(tmp_path / "out")) == ["film.mkv"]

  # The same as a fresh serial run: frame count, timestamps, pixels (lossless), audio.
  fresh = str(tmp_path / "fresh.mkv")
  proc = start(workdir, src, fresh, "--workers", "1")
  assert proc.communicate(timeout=300) and proc.returncode == 0
  a, b = decode(fresh), decode(dst)
  assert a.shape == b.shape == (400, 48, 64, 3)
  assert np.abs(a.astype(np.int16) - b).max() <= 1
  assert source.packet_times(dst) == source.packet_times(fresh)
  assert probe.probe(dst).audio_codec == "aac"


@pytest.mark.integration
def test_host_benchmark_prints_stages_projection_chunked_and_memory(capsys):
  import json

  from pix2pix_jax.tools.bench import main as benchmark

  tiny = ["--render-size", "32", "--ngf", "4", "--ndf", "4", "--num-downs", "5", "--steps", "1"]
  argv = ["video", "--host", "--seconds", "2", "--clip-size", "64x48", "--batch-size", "4"]
  assert benchmark.main([*argv, "--workers", "2", "--project-cores", "16", *tiny]) == 0
  records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
  stages = {r["stage"]: r for r in records if r["bench"] == "host_stage"}
  assert {"decode", "prepare_compose", "model", "pipeline_veryfast", "encode_ultrafast"} <= set(
    stages
  )
  assert stages["decode"]["frames"] == stages["pipeline_veryfast"]["frames"] == 50
  for name in ("decode", "pipeline_veryfast", "encode_veryfast"):
    assert stages[name]["fps_per_core"] > 0
  projection = {
    (r["preset"], r["hints_tracked"]): r for r in records if r["bench"] == "host_projection"
  }
  veryfast = projection["veryfast", False]
  pipeline_ms = stages["pipeline_veryfast"]["cpu_ms_per_frame"]
  assert veryfast["fps"] == pytest.approx(16 * 1000 / pipeline_ms)
  assert veryfast["limit"] in ("decode", "encode")
  # Keyframe hints moved through the clip: the first pass's cost comes on top.
  assert stages["hint_track"]["frames"] == 50
  tracked = projection["veryfast", True]
  track_ms = stages["hint_track"]["cpu_ms_per_frame"]
  assert tracked["fps"] == pytest.approx(16 * 1000 / (pipeline_ms + track_ms))
  (compare,) = [r for r in records if r["bench"] == "host_serial_vs_chunked"]
  assert compare["chunked_over_serial"] == pytest.approx(
    compare["chunked_fps"] / compare["serial_fps"]
  )
  (rss,) = [r for r in records if r["bench"] == "host_peak_rss"]
  assert rss["peak_rss_mb_1_workers"] > 100 and rss["peak_rss_mb_2_workers"] > 100
