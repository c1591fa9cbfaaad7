"""The long-jobs memory benchmark: its peak-RSS measurement and a tiny run of the command."""

import json
import sys

import pytest

from pix2pix_jax.colorize.video import probe
from pix2pix_jax.tools.bench import main as benchmark
from pix2pix_jax.tools.bench import memory as memory_benchmark


@pytest.mark.integration
def test_peak_rss_is_the_commands_own():
  """A child touching 300 MB peaks near 300 MB; a trivial one near nothing, however large the
  caller (this test process holds jax) is."""
  touch = "x = bytearray(300 << 20); x[::4096] = b'1' * len(x[::4096])"
  big = memory_benchmark.run_measured([sys.executable, "-S", "-c", touch])
  small = memory_benchmark.run_measured(["true"])
  assert big.returncode == 0 and small.returncode == 0
  assert 300 <= big.peak_rss_mb < 360, big.peak_rss_mb
  assert small.peak_rss_mb < 40, small.peak_rss_mb


def test_the_clips_have_the_length_size_and_sound_asked_for(tmp_path):
  clip = memory_benchmark.make_clip(str(tmp_path / "c.mp4"), 2.0, "32x24", 25.0)
  info = probe.probe(clip)
  assert (info.width, info.height, info.audio_codec) == (32, 24, "aac")
  assert probe.count_frames(clip) == 50


@pytest.mark.integration
def test_the_memory_benchmark_command_runs_at_a_tiny_size(capsys):
  """The images kind, end to end (a colourising process per case); the clips' kind runs the
  same loop on the clips tested above."""
  argv = ["memory", "--kinds", "images", "--few-images", "2", "--many-images", "6"]
  assert benchmark.main([*argv, "--image-size", "24x16"]) == 0
  (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert record["bench"] == "memory_images"
  assert (record["small"], record["large"]) == ("2 images", "6 images")
  # A colourising process holds jax and the model: hundreds of MB, not a few.
  assert 100 < record["small_peak_rss_mb"] < 4000 and 100 < record["large_peak_rss_mb"] < 4000
  # The ratio comes from the unrounded peaks: equal to the printed ones' up to their rounding.
  ratio = record["large_peak_rss_mb"] / record["small_peak_rss_mb"]
  assert record["large_over_small"] == pytest.approx(ratio, abs=2e-3)
  assert record["render_size"] == 32 and record["cpu_count"] >= 1
