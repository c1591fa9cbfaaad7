"""pix2pix-train's command line, run as a process: config overrides, flag spellings, a tfds
dataset that is not prepared, and profiling."""

import os
import subprocess
import sys

import pytest
from helpers import REPO, free_port, subprocess_env, tiny_config, tiny_flags

from pix2pix_jax.train import loop as train_loop


def _train(tmp_path, *flags):
  """pix2pix-train on configs/default.py and the tiny model; returns the finished process."""
  command = [
    sys.executable,
    "-m",
    "pix2pix_jax.train.main",
    f"--config={REPO}/configs/default.py",
    f"--workdir={tmp_path / 'run'}",
    *tiny_flags(),
    *flags,
  ]
  return subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), cwd=REPO)


def _error_lines(result) -> list[str]:
  return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.integration
@pytest.mark.parametrize(
  "flag, message",
  [
    (
      "--config.data.foldr=x",
      "error: unknown config field 'data.foldr' (did you mean 'data.folder'?)",
    ),
    ("--config.batch_size=x", "error: flag --config.batch_size=x: invalid literal for int()"),
    ("--no_such_flag=1", "error: Unknown command line flag 'no_such_flag'"),
  ],
)
def test_a_bad_override_is_one_line_naming_the_field(tmp_path, flag, message):
  result = _train(tmp_path, flag)
  assert result.returncode == 1, result.stderr
  assert _error_lines(result) and _error_lines(result)[0].startswith(message), result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.integration
def test_digits_for_a_string_field_stay_a_string(tmp_path):
  # As an int, the folder would fail inside os.path with a TypeError traceback.
  result = _train(tmp_path, "--config.data.source=folder", "--config.data.folder=123")
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
  assert _error_lines(result) == [
    f"error: image folder {REPO}/123 does not exist or is not a directory"
  ]


@pytest.mark.integration
@pytest.mark.parametrize("sep", ["-", "_"])
def test_distributed_flags_take_both_spellings(tmp_path, sep):
  flags = [f"--coordinator{sep}address=localhost:{free_port()}", f"--num{sep}processes=1"]
  # A config error stops the run right after jax.distributed started.
  result = _train(tmp_path, *flags, f"--process{sep}id=0", "--config.batch_size=0")
  assert "process 0 of 1, 1 local devices of 1" in result.stderr, result.stderr
  assert result.returncode == 1
  assert _error_lines(result) == ["error: config.batch_size=0 must be a positive integer"]
  assert not (tmp_path / "run").exists()  # nothing made for a run that never starts


@pytest.mark.integration
def test_an_unprepared_tfds_dataset_is_one_line_saying_how_to_prepare_it(tmp_path):
  data_dir = tmp_path / "tfds"
  data_dir.mkdir()
  result = _train(tmp_path, f"--config.data.data_dir={data_dir}", "--config.num_train_steps=1")
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
  prepare = f"tfds.builder('places365_small', data_dir='{data_dir}').download_and_prepare()"
  assert _error_lines(result) == [
    f"error: tfds dataset places365_small is not prepared in data_dir {data_dir}: prepare it "
    f'with `python -c "import tensorflow_datasets as tfds; {prepare}"`, then train with '
    f"--config.data.data_dir={data_dir}"
  ]


@pytest.mark.slow
def test_profile_steps_writes_a_trace_into_the_workdir(tmp_path):
  workdir = tmp_path / "run"
  config = tiny_config(
    **{"data.source": "samples", "num_train_steps": 6, "profile_steps": 2, "eval_every_steps": 100}
  )
  train_loop.train_and_evaluate(config, str(workdir))
  traces = [
    os.path.join(root, name)
    for root, _, names in os.walk(workdir / "plugins" / "profile")
    for name in names
    if name.endswith(".xplane.pb")
  ]
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0, traces


# A tfds dataset that builds offline: the sample photos, as tfds builds any registered dataset.
TINY_TFDS_BUILDER = """
import os

import tensorflow_datasets as tfds

from pix2pix_jax import images


class Builder(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self, features=tfds.features.FeaturesDict({"image": tfds.features.Image()})
    )

  def _split_generators(self, dl_manager):
    generate = self._generate_examples
    return {"train": generate("train"), "validation": generate("eval")}

  def _generate_examples(self, split):
    folder = os.path.join(images.SAMPLES_DIR, split)
    for name in sorted(os.listdir(folder)):
      if name.endswith(".jpg"):
        yield name, {"image": os.path.join(folder, name)}
"""


@pytest.mark.integration
@pytest.mark.slow
def test_a_prepared_tfds_dataset_trains_from_its_data_dir(tmp_path):
  package = tmp_path / "code" / "tiny_photos"
  package.mkdir(parents=True)
  (package / "__init__.py").write_text("")
  (package / "tiny_photos_dataset_builder.py").write_text(TINY_TFDS_BUILDER)
  data_dir = tmp_path / "tfds"
  prepare = (
    "import tensorflow_datasets as tfds, tiny_photos.tiny_photos_dataset_builder; "
    f"tfds.builder('tiny_photos', data_dir='{data_dir}').download_and_prepare()"
  )
  env = subprocess_env()
  env["PYTHONPATH"] += os.pathsep + str(tmp_path / "code")
  subprocess.run([sys.executable, "-c", prepare], check=True, env=env, capture_output=True)
  # Training does not import the builder: tfds reads the prepared dataset from its data_dir.
  result = _train(
    tmp_path,
    "--config.data.name=tiny_photos",
    f"--config.data.data_dir={data_dir}",
    "--config.num_train_steps=2",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["2"]
