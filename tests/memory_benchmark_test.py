"""The long-jobs memory benchmark: its peak-RSS measurement and a tiny run of the command."""

import json
import sys

from pix2pix_jax.tools import benchmark, memory_benchmark


def test_peak_rss_is_the_commands_own():
  """A child touching 300 MB peaks near 300 MB; a trivial one near nothing, however large the
  caller (this test process holds jax) is."""
  touch = "x = bytearray(300 << 20); x[::4096] = b'1' * len(x[::4096])"
  big = memory_benchmark.run_measured([sys.executable, "-S", "-c", touch])
  small = memory_benchmark.run_measured(["true"])
  assert big.returncode == 0 and small.returncode == 0
  assert 300 <= big.peak_rss_mb < 360, big.peak_rss_mb
  assert small.peak_rss_mb < 40, small.peak_rss_mb


def test_the_memory_benchmark_command_runs_at_a_tiny_size(capsys):
  argv = ["memory", "--short-seconds", "1", "--long-seconds", "3", "--clip-size", "32x24"]
  argv += ["--few-images", "2", "--many-images", "6", "--image-size", "24x16"]
  assert benchmark.main(argv) == 0
  records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert [r["bench"] for r in records] == ["memory_video", "memory_images"]
  video, images = records
  assert (video["small"], video["large"]) == ("1 s", "3 s")
  assert (images["small"], images["large"]) == ("2 images", "6 images")
  for r in records:
    # A colourising process holds jax and the model: tens to hundreds of MB, not a few.
    assert 100 < r["small_peak_rss_mb"] < 4000 and 100 < r["large_peak_rss_mb"] < 4000, r
    assert r["large_over_small"] == round(r["large_peak_rss_mb"] / r["small_peak_rss_mb"], 3)
    assert r["render_size"] == 32 and r["cpu_count"] >= 1
