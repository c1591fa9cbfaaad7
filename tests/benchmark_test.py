"""Smoke tests of the benchmark command line at a tiny size (batches divide the 4 test devices)."""

import json

import pytest

from pix2pix_jax.tools import shapes
from pix2pix_jax.tools.bench import main as benchmark
from pix2pix_jax.tools.bench import speed

TINY = ["--render-size", "32", "--ngf", "4", "--ndf", "4", "--num-downs", "5", "--steps", "1"]


def _records(capsys) -> list[dict]:
  return [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


@pytest.mark.parametrize("kind", ["train", "infer"])
def test_train_and_infer_print_one_json_record(kind, capsys):
  assert benchmark.main([kind, "--batch-size", "4", *TINY]) == 0
  (record,) = _records(capsys)
  assert record["bench"] == kind and record["batch_size"] == 4 and record["render_size"] == 32
  assert record["img_per_s"] > 0 and record["compile_s"] > 0
  assert record["img_per_s"] == pytest.approx(4 / record["step_s"])
  assert record["gflop_per_img"] > 0 and record["gflop_per_s"] > 0
  if record["platform"] == "cpu":
    assert (
      0
      < record["ceiling_fraction"]
      == pytest.approx(record["gflop_per_s"] / record["matmul_gflop_per_s"])
    )


@pytest.mark.integration
def test_compare_runs_the_peer_and_reports_ratios_against_its_best_run(
  tmp_path, capsys, monkeypatch
):
  monkeypatch.setattr(speed, "matmul_ceiling", lambda dtype: 1e11)  # measured above
  peer = tmp_path / "peer.py"
  runs = tmp_path / "runs"
  peer.write_text(  # the second of each batch size's runs is the faster at training
    "import json, pathlib, sys\n"
    "b = int(sys.argv[sys.argv.index('--batch') + 1])\n"
    f"runs = pathlib.Path({str(runs)!r})\n"
    "runs.write_text(runs.read_text() + 'x' if runs.exists() else 'x')\n"
    "train = b * (2.0 if len(runs.read_text()) % 2 == 0 else 1.0)\n"
    "print('warming up')\n"
    "print(json.dumps({'train_img_per_s': train, 'infer_img_per_s': 10.0 * b}))\n"
  )
  benchmark.main(["compare", str(peer), "--batch-sizes", "4", *TINY])
  records = _records(capsys)
  assert [r["batch_size"] for r in records] == [4]
  assert runs.read_text() == "xx"
  for r in records:
    assert r["peer_runs"] == 2
    assert r["peer_train_img_per_s"] == 2 * r["batch_size"]
    assert r["train_ratio"] == pytest.approx(r["ours_train_img_per_s"] / (2 * r["batch_size"]))
    assert r["infer_ratio"] == pytest.approx(r["ours_infer_img_per_s"] / (10 * r["batch_size"]))


def test_peak_flops_matches_the_longest_device_kind_prefix_and_the_dtype():
  assert speed.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
  assert speed.peak_flops("NVIDIA H100 80GB HBM3", "float32") == 67e12
  assert speed.peak_flops("NVIDIA H100 PCIe") == 756e12
  assert speed.peak_flops("NVIDIA H200", "float32") == 67e12
  assert speed.peak_flops("TPU v4", "float32") is None
  assert speed.peak_flops("cpu") is None


@pytest.mark.integration
def test_video_prints_each_rate_and_the_memory_of_a_clip_and_a_10x_longer_one(capsys):
  benchmark.main(
    ["video", "--seconds", "0.4", "--clip-size", "64x48", "--batch-size", "4"]
    + ["--color-space", "lab", *TINY]
  )
  records = {r["bench"]: r for r in _records(capsys)}
  for name in ("decode", "model", "encode", "end_to_end"):
    assert records[f"video_{name}"]["fps"] > 0
  assert records["video_decode"]["frames"] == records["video_end_to_end"]["frames"] == 10
  ratio = records["video_e2e_over_model"]["ratio"]
  assert ratio == pytest.approx(records["video_end_to_end"]["fps"] / records["video_model"]["fps"])
  memory = records["video_peak_rss"]
  assert (memory["short_frames"], memory["long_frames"]) == (10, 100)
  assert memory["long_over_short"] == pytest.approx(
    memory["long_peak_rss_mb"] / memory["short_peak_rss_mb"]
  )
  assert memory["short_first_run_peak_rss_mb"] > 100
  hinted = records["video_hints"]
  assert hinted["fixed_fps"] > 0 and hinted["track_fps"] > 0
  assert hinted["track_over_fixed"] == pytest.approx(hinted["track_fps"] / hinted["fixed_fps"])
  assert hinted["first_pass_ms_per_frame"] > 0


def test_compare_needs_the_peer_script(capsys):
  with pytest.raises(SystemExit) as exit_info:
    benchmark.main(["compare", *TINY])
  assert exit_info.value.code == 2 and "peer" in capsys.readouterr().err


def test_a_config_file_sets_the_shapes_and_flags_override_it(tmp_path):
  config = tmp_path / "c.py"
  config.write_text(
    "from pix2pix_jax.tools import shapes\n"
    "def get_config():\n"
    "  c = shapes.paper_config()\n"
    "  c.model.ngf = 8\n"
    "  c.color_space = 'lab'\n"
    "  return c\n"
  )
  args = benchmark.build_parser().parse_args(["train", "--config", str(config), "--ngf", "4"])
  got = shapes.config_from_args(args)
  assert (got.model.ngf, got.color_space, got.data.crop_size) == (4, "lab", 256)
