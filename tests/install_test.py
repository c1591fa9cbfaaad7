"""A non-editable install: the commands run from any folder, given config paths."""

import json
import os
import shutil
import site
import subprocess
import sys

import pytest
from helpers import REPO, tiny_flags, tiny_overrides, write_sweep

pytestmark = pytest.mark.integration  # every test here starts processes


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """A fresh venv holding `pip install .` of this checkout (its dependencies come from the test
  environment through a path file, so nothing is downloaded)."""
  venv = tmp_path_factory.mktemp("venv")
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
  purelib = subprocess.run(
    [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
    check=True,
    capture_output=True,
    text=True,
  ).stdout.strip()
  with open(os.path.join(purelib, "test_dependencies.pth"), "w") as f:
    f.write("\n".join(site.getsitepackages()) + "\n")
  build = tmp_path_factory.mktemp("build")
  # Built from a copy: setuptools writes build/ and *.egg-info into the source tree, which two
  # pytest workers (or a `pip install -e .` meanwhile) would write at once.
  source = build / "source"
  shutil.copytree(
    REPO,
    source,
    ignore=shutil.ignore_patterns(
      ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", ".*_cache"
    ),
  )
  subprocess.run(
    [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    + ["--no-build-isolation", "--no-cache-dir", str(source)],
    check=True,
    cwd=build,
    env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
  )
  return venv


def _env():
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  return {**env, "JAX_PLATFORMS": "cpu"}


def _run(venv, *args, cwd):
  result = subprocess.run(
    [str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, env=_env()
  )
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result


def test_the_installed_package_is_not_the_checkout(installed, tmp_path):
  out = _run(
    installed, "python", "-c", "import pix2pix_jax; print(pix2pix_jax.__file__)", cwd=tmp_path
  )
  location = out.stdout.strip()
  assert str(installed) in location and not location.startswith(REPO)
  samples = os.path.join(os.path.dirname(location), "data", "samples", "train")
  assert len(os.listdir(samples)) == 17  # package data


def test_benchmarks_run_from_any_folder(installed, tmp_path):
  tiny = ["--batch-size", "2", "--render-size", "32", "--ngf", "4", "--ndf", "4"]
  tiny += ["--num-downs", "5", "--steps", "1"]
  for kind in ("train", "infer"):
    out = _run(installed, "pix2pix-benchmark", kind, *tiny, cwd=tmp_path)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["bench"] == kind and record["img_per_s"] > 0


def test_training_and_a_sweep_run_given_config_paths(installed, tmp_path):
  workdir = tmp_path / "train"
  config = os.path.join(REPO, "configs", "quickstart.py")
  _run(
    installed,
    "pix2pix-train",
    f"--config={config}",
    f"--workdir={workdir}",
    "--config.num_train_steps=2",
    *tiny_flags(),
    "--config.data.max_eval_examples=0",  # no evaluation: what is tested is the installation
    cwd=tmp_path,
  )
  assert os.listdir(workdir / "checkpoints") == ["2"]

  sweep_file = tmp_path / "sweeps" / "tiny.py"
  sweep_file.parent.mkdir()
  # No evaluation: what is tested is the installation.
  write_sweep(sweep_file, {"loss.gan": ["hinge"]}, tiny_overrides(**{"data.max_eval_examples": 0}))
  _run(
    installed, "pix2pix-sweep", str(sweep_file), "--output", str(tmp_path / "runs"), cwd=tmp_path
  )
  assert (tmp_path / "runs" / "tiny" / "gan=hinge" / "DONE").exists()
  assert (tmp_path / "runs" / "tiny" / "results.csv").exists()
