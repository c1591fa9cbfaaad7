"""pix2pix-benchmark accelerator-report on CPU at a tiny size: real measurements, a real PyTorch
peer process (where torch is installed), and the markdown table checked against them."""

import importlib.util
import json
import textwrap

import jax
import pytest

from pix2pix_jax import files
from pix2pix_jax.tools.bench import accelerator_report
from pix2pix_jax.tools.bench import main as benchmark

# Batches divide the 4 test devices.
TINY = ["--size", "32", "--ngf", "4", "--ndf", "4", "--num-downs", "5", "--batches", "4"]
TINY += ["--steps", "1", "--video-seconds", "0.4", "--clip-size", "64x48", "--video-batch", "4"]
TINY += ["--archive-clip-size", "64x48", "--archive-seconds", "2", "--archive-workers", "2"]
HAVE_TORCH = importlib.util.find_spec("torch") is not None

# A small PyTorch pix2pix-like program with the peer's command line and output
# (torch_pix2pix.py's network needs 256x256 inputs): a stride-2 conv and a transposed conv,
# BCE + L1, Adam, timed as the peer times. It also writes the flags it was given.
PEER = """
import argparse, json, statistics, sys, time
import torch
from torch import nn

p = argparse.ArgumentParser()
for flag in ("--batch", "--res", "--steps", "--in-ch", "--out-ch"):
  p.add_argument(flag, type=int)
p.add_argument("--device", default="cpu")
p.add_argument("--dtype", default="float32")
a = p.parse_args()
open(ARGV_FILE, "a").write(" ".join(sys.argv[1:]) + "\\n")
g = nn.Sequential(nn.Conv2d(a.in_ch, 8, 4, 2, 1), nn.ReLU(),
                  nn.ConvTranspose2d(8, a.out_ch, 4, 2, 1), nn.Tanh())
d = nn.Conv2d(a.in_ch + a.out_ch, 1, 4, 2, 1)
opt = torch.optim.Adam(list(g.parameters()) + list(d.parameters()), 2e-4)
amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bfloat16")
x = torch.rand(a.batch, a.in_ch, a.res, a.res) * 2 - 1
y = torch.rand(a.batch, a.out_ch, a.res, a.res) * 2 - 1

def train():
  with amp:
    fake = g(x)
    logits = d(torch.cat([x, fake], 1))
    loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    loss = loss + 100 * (fake - y).abs().mean()
  opt.zero_grad(); loss.backward(); opt.step()

def timed(fn):
  fn()
  times = []
  for _ in range(a.steps):
    t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
  return statistics.median(times)

train_s = timed(train)
with torch.no_grad(), amp:
  infer_s = timed(lambda: g(x))
print("warming up is over")
print(json.dumps({"impl": "torch", "torch": torch.__version__, "device": a.device,
                  "dtype": a.dtype, "batch": a.batch, "res": a.res,
                  "train_img_per_s": a.batch / train_s, "infer_img_per_s": a.batch / infer_s}))
"""


def _records(capsys) -> list[dict]:
  return [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


def _row_line(text: str, dtype: str, batch: int) -> str:
  (line,) = [x for x in text.splitlines() if x.startswith(f"| {dtype} | {batch} |")]
  return line


@pytest.mark.integration
def test_the_report_measures_and_tabulates_train_infer_peer_and_video(tmp_path, capsys):
  output = tmp_path / "report.md"
  argv = ["accelerator-report", "--output", str(output), *TINY]
  if HAVE_TORCH:
    peer_argv = tmp_path / "peer_argv.txt"
    peer = tmp_path / "peer.py"
    peer.write_text(f"ARGV_FILE = {str(peer_argv)!r}\n" + textwrap.dedent(PEER))
    argv += ["--peer", str(peer)]
  assert benchmark.main(argv) == 0
  records = _records(capsys)
  text = output.read_text()

  env = records[0]
  assert env["bench"] == "report_environment" and env["jax"] == jax.__version__
  assert f"| jax | {jax.__version__} |" in text and f"| flax | {env['flax']} |" in text
  assert text.startswith(f"# pix2pix_jax on {env['device']}\n")
  assert env["device"].startswith(jax.devices()[0].device_kind)

  rows = [r for r in records if r["bench"] == "report_row"]
  assert [(r["dtype"], r["batch"]) for r in rows] == [("float32", 4), ("bfloat16", 4)]
  for row in rows:
    train, infer = row["train"], row["infer"]
    assert train["bench"] == "train" and infer["bench"] == "infer"
    assert (train["dtype"], train["batch_size"], train["render_size"]) == (row["dtype"], 4, 32)
    assert train["img_per_s"] > 0 and infer["img_per_s"] > 0 and train["compile_s"] > 0
    cells = [c.strip() for c in _row_line(text, row["dtype"], 4).split("|")[1:-1]]
    assert cells[2] == accelerator_report._number(train["img_per_s"])
    assert cells[5] == accelerator_report._number(infer["img_per_s"])
    assert cells[8] == " / ".join(
      accelerator_report._number(r["compile_s"]) for r in (train, infer)
    )
    assert cells[10] == "n/a / n/a"  # no peak FLOP/s for a CPU
    if HAVE_TORCH:
      peer = row["peer"]
      assert (peer["device"], peer["dtype"], peer["batch"], peer["res"]) == (
        "cpu",
        row["dtype"],
        4,
        32,
      )
      assert row["train_ratio"] == pytest.approx(train["img_per_s"] / peer["train_img_per_s"])
      assert row["infer_ratio"] == pytest.approx(infer["img_per_s"] / peer["infer_img_per_s"])
      assert cells[3] == accelerator_report._number(peer["train_img_per_s"])
      assert cells[4] == accelerator_report._number(row["train_ratio"], 2)
      assert cells[7] == accelerator_report._number(row["infer_ratio"], 2)
    else:
      assert row["peer"] == {"skipped": "no --peer"} and cells[3] == "no --peer"
  if HAVE_TORCH:
    assert f"Peer: torch {rows[0]['peer']['torch']} on cpu." in text
    lines = peer_argv.read_text().splitlines()
    assert len(lines) == 2
    for line, dtype in zip(lines, ("float32", "bfloat16"), strict=True):
      assert line.startswith("--batch 4 --res 32 --steps 1 --in-ch 1 --out-ch 3")
      assert line.endswith(f"--device cpu --dtype {dtype}")

  video = next(r for r in records if r["bench"] == "report_video")
  assert video["frames"] == 10 and video["clip_size"] == "64x48" and video["batch_size"] == 4
  assert video["e2e_over_model"] == pytest.approx(video["end_to_end_fps"] / video["model_fps"])
  want = [video["decode_fps"], video["model_fps"], video["encode_fps"], video["end_to_end_fps"]]
  want = " | ".join(accelerator_report._number(v) for v in want)
  ratio = accelerator_report._number(video["e2e_over_model"], 2)
  assert f"| 64x48 | 32 | 4 | {want} | {ratio} |" in text
  met = "yes" if video["e2e_over_model"] >= 0.9 else "no"
  assert f"| video end to end >= 0.9x model-only | {ratio} | {met} |" in text

  archive = next(r for r in records if r["bench"] == "report_archive")
  assert (archive["clip_size"], archive["workers"], archive["chunk_seconds"]) == ("64x48", 2, 0.5)
  ratio = archive["chunked_fps"] / archive["serial_fps"]
  assert archive["chunked_over_serial"] == pytest.approx(ratio)
  cells = [archive[k] for k in ("serial_fps", "chunked_fps")]
  want = " | ".join(accelerator_report._number(v) for v in cells)
  assert f"| 64x48 | 2 | 0.5 | {want} | {accelerator_report._number(ratio, 2)} |" in text
  fps = accelerator_report._number(archive["chunked_fps"], 2)
  assert "| archive: 1080p chunked end to end >= 290 frames/s | " + fps in text


def _result(ours: float, peer: float | None, batch: int, dtype: str = "float32") -> dict:
  return {
    "dtype": dtype,
    "batch": batch,
    "train": {"img_per_s": ours, "compile_s": 1.0, "gflop_per_s": 2.0, "mfu": 0.5},
    "infer": {"img_per_s": 2 * ours, "compile_s": 1.0, "gflop_per_s": 2.0, "mfu": 0.25},
    "peer": {"skipped": "failed: CalledProcessError: boom"}
    if peer is None
    else {"train_img_per_s": peer, "infer_img_per_s": peer, "torch": "2.11", "device": "cuda"},
  }


def test_the_targets_compare_ratios_at_batch_1_and_16_and_say_what_was_not_measured():
  results = {
    "environment": {"device": "NVIDIA H200 x1 (gpu)"},
    "minutes": 1.0,
    "video": {"skipped": "time budget spent"},
    "rows": [_result(130, 100, 1), _result(100, 100, 16), _result(1, None, 64)],
  }
  got = dict(accelerator_report.targets(results))
  assert got == {
    "train >= 1.2x the peer, float32, batch 1": 1.3,
    "infer >= 1.2x the peer, float32, batch 1": 2.6,
    "train >= 1.2x the peer, float32, batch 16": 1.0,
    "infer >= 1.2x the peer, float32, batch 16": 2.0,
    "video end to end >= 0.9x model-only": None,
    "archive: 1080p chunked end to end >= 290 frames/s": None,
  }
  args = accelerator_report_args(["--output", "x.md"])
  text = accelerator_report.markdown(results, args)
  assert "| train >= 1.2x the peer, float32, batch 1 | 1.3 | yes |" in text
  assert "| train >= 1.2x the peer, float32, batch 16 | 1 | no |" in text
  assert "| video end to end >= 0.9x model-only | n/a | not measured |" in text
  results["archive"] = {"chunked_fps": 300.0, "serial_fps": 40.0, "chunked_over_serial": 7.5}
  results["archive"].update(clip_size="1920x1080", workers=8, chunk_seconds=5.0)
  results["archive"].update(serial_cpu_ms_per_frame=50.0, chunked_cpu_ms_per_frame=55.0)
  text = accelerator_report.markdown(results, args)
  assert "| archive: 1080p chunked end to end >= 290 frames/s | 300 | yes |" in text
  assert "| 1920x1080 | 8 | 5 | 40 | 300 | 7.5 | 50 / 55 |" in text
  assert "| 640x360 | 256 | 16 | time budget spent |" in text
  assert "| float32 | 64 | 1 | failed: CalledProcessError: boom | n/a | 2 |" in text
  assert (
    "| float32 | 1 | 130 | 100 | 1.3 | 260 | 100 | 2.6 | 1 / 1 | 2 / 2 | 50.0% / 25.0% |" in text
  )
  assert "Peer: torch 2.11 on cuda." in text


def accelerator_report_args(argv: list[str]):
  return benchmark.build_parser().parse_args(["accelerator-report", *argv])


def test_an_existing_output_is_refused_before_anything_is_measured(tmp_path):
  output = tmp_path / "report.md"
  output.write_text("an earlier report")
  with pytest.raises(files.MediaError, match="output exists"):
    benchmark.main(["accelerator-report", "--output", str(output), *TINY])
  assert output.read_text() == "an earlier report"


def test_a_spent_budget_still_writes_the_report_with_every_measurement_marked(tmp_path, capsys):
  output = tmp_path / "report.md"
  argv = ["accelerator-report", "--output", str(output), "--budget-minutes", "0", *TINY]
  assert benchmark.main(argv) == 0
  text = output.read_text()
  for dtype in ("float32", "bfloat16"):
    spent = " | ".join(["time budget spent"] * 2)
    assert _row_line(text, dtype, 4).startswith(f"| {dtype} | 4 | {spent} | n/a |")
  assert "| 64x48 | 32 | 4 | time budget spent |" in text
  rows = [r for r in _records(capsys) if r["bench"] == "report_row"]
  assert all(r[k] == {"skipped": "time budget spent"} for r in rows for k in ("train", "peer"))
