"""Sweeps: definitions are checked before launching, runs train, restarts skip finished runs."""

import csv
import os

import numpy as np
import pytest
from helpers import REPO, exit_status, tiny_overrides, write_sweep

from pix2pix_jax.tools.sweep import main as sweep
from pix2pix_jax.tools.sweep import spec


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A 2-run grid run with --parallel 2, then restarted."""
  tmp = tmp_path_factory.mktemp("sweep")
  path = write_sweep(tmp / "tiny.py", {"loss.l1_weight": [1.0, 10.0]})
  root = tmp / "runs"
  code = sweep.main([path, "--output", str(root), "--parallel", "2"])
  return {"path": path, "root": root, "dir": root / "tiny", "code": code}


@pytest.mark.integration
def test_parallel_grid_runs_and_writes_results(finished):
  assert finished["code"] == 0
  runs = sorted(p.name for p in finished["dir"].iterdir() if p.is_dir())
  assert runs == ["l1_weight=1", "l1_weight=10"]
  for run in runs:
    workdir = finished["dir"] / run
    for name in ("DONE", "config.json", "train.log"):
      assert (workdir / name).exists()
    assert (workdir / "checkpoints" / "2").is_dir()
  with open(finished["dir"] / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["run"] for r in rows] == ["l1_weight=1", "l1_weight=10"]
  assert [float(r["loss.l1_weight"]) for r in rows] == [1.0, 10.0]
  for row in rows:
    assert row["status"] == "done" and int(row["steps"]) == 2
    assert np.isfinite(float(row["final_ciede2000"])) and np.isfinite(float(row["final_psnr"]))
    assert float(row["best_ciede2000"]) <= float(row["final_ciede2000"])
    assert float(row["images_per_sec"]) > 0 and float(row["wall_time_s"]) > 0
  table = (finished["dir"] / "results.md").read_text()
  default = os.path.join(REPO, "configs", "default.py")
  base = os.path.relpath(default, os.path.dirname(finished["path"]))
  assert table.startswith("# Sweep tiny\n") and f"Base config `{base}`" in table
  assert table.count("| l1_weight=") == 2
  for png in ("ciede2000_vs_params.png", "ciede2000_curves.png"):
    assert (finished["dir"] / png).read_bytes().startswith(b"\x89PNG")


@pytest.mark.integration
def test_restart_skips_finished_runs(finished, capsys):
  logs = [finished["dir"] / run / "train.log" for run in ("l1_weight=1", "l1_weight=10")]
  before = [(p.stat().st_mtime_ns, p.read_text()) for p in logs]
  assert sweep.main([finished["path"], "--output", str(finished["root"])]) == 0
  out = capsys.readouterr().out
  assert out.count("already finished, skipped") == 2 and "started" not in out
  assert [(p.stat().st_mtime_ns, p.read_text()) for p in logs] == before
  with open(finished["dir"] / "results.csv") as f:
    assert len(list(csv.DictReader(f))) == 2


def test_unknown_field_fails_before_launching(tmp_path, capsys):
  path = write_sweep(tmp_path / "bad.py", {"loss.l1_wieght": [1.0, 10.0]})
  root = tmp_path / "runs"
  assert exit_status(sweep.main, [path, "--output", str(root)]) == 1
  err = capsys.readouterr().err
  assert "loss.l1_wieght" in err and err.startswith("error:")
  assert not root.exists()


def test_bad_value_and_unknown_key_fail_before_launching(tmp_path, capsys):
  root = tmp_path / "runs"
  path = write_sweep(tmp_path / "bad.py", {"loss.gan": ["vanilla", "wasserstein"]})
  assert exit_status(sweep.main, [path, "--output", str(root)]) == 1
  assert "wasserstein" in capsys.readouterr().err
  path = write_sweep(tmp_path / "typo.py", {"loss.gan": ["vanilla"]}, metrics="psnr")
  assert exit_status(sweep.main, [path, "--output", str(root)]) == 1
  assert "metrics" in capsys.readouterr().err
  assert not root.exists()


def test_dry_run_prints_commands_and_launches_nothing(tmp_path, capsys):
  path = write_sweep(tmp_path / "s.py", {"loss.gan": ["vanilla", "hinge"]})
  root = tmp_path / "runs"
  assert sweep.main([path, "--output", str(root), "--dry-run"]) == 0
  out = capsys.readouterr().out
  assert out.count("pix2pix_jax.train.main") == 2 and "--config.loss.gan=hinge" in out
  assert "--config.model.ngf=4" in out
  assert not root.exists()


def test_command_line_overrides_apply_to_every_run_and_are_checked(tmp_path, capsys):
  path = write_sweep(tmp_path / "s.py", {"loss.gan": ["vanilla", "hinge"]})
  root = tmp_path / "runs"
  argv = [path, "--output", str(root), "--dry-run", "--config.loss.l1_weight=5"]
  assert sweep.main(argv) == 0
  assert capsys.readouterr().out.count("--config.loss.l1_weight=5") == 2
  assert exit_status(sweep.main, [path, "--dry-run", "--config.loss.no_such=1"]) == 1
  assert "unknown config field 'loss.no_such'" in capsys.readouterr().err
  assert exit_status(sweep.main, [path, "--dry-run", "--l1=5"]) == 1
  assert "overrides are --config.field=value" in capsys.readouterr().err
  assert not root.exists()


def test_random_search_is_reproducible_and_in_bounds(tmp_path):
  random = {"optim.learning_rate": {"log_uniform": [1e-5, 1e-3]}, "loss.gan": ["lsgan", "hinge"]}
  path = tmp_path / "r.py"
  base = os.path.join(REPO, "configs", "default.py")
  body = {"base_config": base, "random": random, "num_trials": 5, "seed": 3}
  path.write_text(f"def get_sweep():\n  return {body!r}\n")
  a = spec.load_sweep(str(path), root=str(tmp_path))
  b = spec.load_sweep(str(path), root=str(tmp_path))
  assert [r.params for r in a.runs] == [r.params for r in b.runs]
  assert len(a.runs) == 5 and len({r.name for r in a.runs}) == 5
  assert a.name == "r" and a.swept == ["optim.learning_rate", "loss.gan"]
  for run in a.runs:
    assert 1e-5 <= run.params["optim.learning_rate"] <= 1e-3
    assert run.config.optim.learning_rate == run.params["optim.learning_rate"]
    assert run.params["loss.gan"] in ("lsgan", "hinge")


def test_grid_points_and_run_names():
  points = spec.grid_points({"loss.gan": ["vanilla", "hinge"], "loss.l1_weight": [1.0, 10.0]})
  assert len(points) == 4 and points[1] == {"loss.gan": "vanilla", "loss.l1_weight": 10.0}
  assert spec.run_name(points[1]) == "gan=vanilla,l1_weight=10"
  assert spec.run_name({"model.ngf": 4, "model.ndf": 4}) == "ngf=4,ndf=4"
  assert spec.run_name({"a.x": 1, "b.x": 2}) == "a.x=1,b.x=2"  # ambiguous leaves: full names
  assert spec.run_name({}) == "base"


@pytest.mark.parametrize("name", ["seed", "l1_weight", "gan_loss", "color_space"])
def test_experiment_definitions_load_at_both_scales(name, tmp_path):
  path = os.path.join(REPO, "experiments", f"{name}.py")
  quick = spec.load_sweep(path, root=str(tmp_path))
  full = spec.load_sweep(path, root=str(tmp_path), scale="full")
  assert quick.runs and len(full.runs) == len(quick.runs)
  assert quick.runs[0].config.data.source == "samples"
  assert full.runs[0].config.data.source == "tfds" and full.name == f"{name}-full"


@pytest.mark.integration
def test_a_failing_run_is_reported_and_not_marked_done(tmp_path, capsys):
  missing = str(tmp_path / "no_such_folder")
  overrides = tiny_overrides(**{"data.source": "folder", "data.folder": missing})
  path = write_sweep(tmp_path / "fails.py", {"loss.gan": ["hinge"]}, overrides=overrides)
  root = tmp_path / "runs"
  assert exit_status(sweep.main, [path, "--output", str(root)]) == 1
  assert "1 runs failed: gan=hinge" in capsys.readouterr().out
  workdir = root / "tiny" / "gan=hinge"
  assert not (workdir / "DONE").exists()
  assert "no_such_folder" in (workdir / "train.log").read_text()
  with open(root / "tiny" / "results.csv") as f:
    assert next(csv.DictReader(f))["status"] == "failed (exit 1)"
