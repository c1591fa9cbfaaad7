"""--shard K/N, its SLURM defaults and --files-from (the SLURM array run is in slurm_test.py)."""

import os
import random

import pytest
from helpers import tiny_generator_workdir, write_photo_folder

from pix2pix_jax import cli, errors
from pix2pix_jax.colorize import main as colorize
from pix2pix_jax.colorize import shards
from pix2pix_jax.colorize.jobs import Job


def _jobs(videos, images, others=0):
  jobs = [Job(f"in/v{i}.mp4", f"out/v{i}.mp4") for i in range(videos)]
  jobs += [Job(f"in/i{i}.png", f"out/i{i}.png") for i in range(images)]
  jobs += [Job(f"in/x{i}", f"out/x{i}") for i in range(others)]
  jobs.append(Job("in/missing.png", None, error="in/missing.png: no such file or directory"))
  return jobs


@pytest.mark.parametrize("videos,images", [(0, 0), (1, 0), (3, 10), (7, 2), (5, 40)])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_are_balanced_disjoint_complete_and_deterministic(videos, images, count):
  jobs = _jobs(videos, images, others=2)
  parts = [shards.select(jobs, shards.Shard(k, count, "test")) for k in range(count)]
  ids = [id(job) for part in parts for job in part]
  assert sorted(ids) == sorted(id(job) for job in jobs)  # each job in exactly one shard
  sizes = [len(part) for part in parts]
  assert max(sizes) - min(sizes) <= 1
  video_counts = [sum(job.src.endswith(".mp4") for job in part) for part in parts]
  assert max(video_counts) - min(video_counts) <= 1
  # The same split from the list in another order (other INPUT order, another process).
  shuffled = list(jobs)
  random.Random(count).shuffle(shuffled)
  again = [shards.select(shuffled, shards.Shard(k, count, "test")) for k in range(count)]
  assert [[job.src for job in part] for part in again] == [[j.src for j in p] for p in parts]


def test_round_robin_over_videos_then_unknown_then_images():
  # v0 v1 v2 | x0 | missing.png (no output: sorts first) i0 i1 i2
  part = shards.select(_jobs(3, 3, others=1), shards.Shard(1, 2, "test"))
  assert [job.src for job in part] == ["in/v1.mp4", "in/x0", "in/i0.png", "in/i2.png"]
  assert shards.split(list(range(10)), 2, 4) == [2, 6]


@pytest.mark.parametrize(
  "text,cause",
  [
    ("4/4", "shard 4 does not exist (the 4 shard(s) are numbered 0 to 3)"),
    ("7/3", "shard 7 does not exist"),
    ("0/0", "the number of shards must be at least 1"),
    ("1", "expected K/N"),
    ("-1/3", "expected K/N"),
    ("a/b", "expected K/N"),
    ("1/2/3", "expected K/N"),
  ],
)
def test_a_bad_shard_is_one_line_naming_it(text, cause):
  with pytest.raises(errors.UserError) as e:
    shards.parse(text)
  assert f"--shard {text}" in str(e.value) and cause in str(e.value)
  assert "\n" not in str(e.value)


def test_flags():
  assert shards.from_flags("2/5", None, None) == shards.Shard(2, 5, "--shard 2/5")
  assert shards.from_flags(None, 1, 3).index == 1 and shards.from_flags(None, 1, 3).count == 3
  assert shards.from_flags(None, None, None) is None
  for flags, cause in [
    (("1/2", 1, 2), "not both"),
    ((None, 1, None), "go together"),
    ((None, None, 2), "go together"),
    ((None, 3, 3), "shard 3 does not exist"),
  ]:
    with pytest.raises(errors.UserError, match=cause):
      shards.from_flags(*flags)


def _array(task, count, low=None, high=None, step=None, **extra):
  env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": str(count), **extra}
  for name, value in (("MIN", low), ("MAX", high), ("STEP", step)):
    if value is not None:
      env[f"SLURM_ARRAY_TASK_{name}"] = str(value)
  return env


def _index(env):
  shard = shards.from_environment(env)
  return None if shard is None else (shard.index, shard.count)


def test_slurm_array_defaults():
  assert _index({}) is None
  assert _index(_array(0, 4, 0, 3, 1)) == (0, 4)
  assert _index(_array(3, 4)) == (3, 4)  # no MIN: ids from 0
  # --array=1-3: ids from SLURM_ARRAY_TASK_MIN.
  assert [_index(_array(t, 3, 1, 3, 1)) for t in (1, 2, 3)] == [(0, 3), (1, 3), (2, 3)]
  # --array=3-7:2
  assert [_index(_array(t, 3, 3, 7, 2)) for t in (3, 5, 7)] == [(0, 3), (1, 3), (2, 3)]
  # Throttled (--array=0-9%2): still 10 shards.
  assert _index(_array(9, 10, 0, 9, 1)) == (9, 10)
  assert "SLURM array task 2, 2 of 3" in shards.from_environment(_array(2, 3, 1, 3, 1)).source


def test_slurm_array_ids_that_are_not_a_range_are_refused():
  for task in (1, 4, 9):  # --array=1,4,9: SLURM says MIN 1, MAX 9, STEP 1, COUNT 3
    with pytest.raises(errors.UserError, match="not an evenly spaced range.*give --shard K/N"):
      shards.from_environment(_array(task, 3, 1, 9, 1))
  with pytest.raises(errors.UserError, match="SLURM_ARRAY_TASK_COUNT"):
    shards.from_environment({"SLURM_ARRAY_TASK_ID": "1"})
  with pytest.raises(errors.UserError, match="is not a number"):
    shards.from_environment(_array("x", 3))


def test_slurm_step_tasks_and_the_batch_shell():
  # srun --ntasks=3: one shard per task.
  step = {
    "SLURM_STEP_ID": "0",
    "SLURM_PROCID": "2",
    "SLURM_STEP_NUM_TASKS": "3",
    "SLURM_NTASKS": "3",
  }
  assert _index(step) == (2, 3)
  assert shards.from_environment(step).source == "SLURM task 2 of 3"
  # The batch shell of an --ntasks=3 job (no SLURM_STEP_ID): not one of the tasks, so no shard.
  assert _index({"SLURM_PROCID": "0", "SLURM_NTASKS": "3", "SLURM_JOB_ID": "5"}) is None
  # A one-task step: no shard.
  assert _index({"SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}) is None
  # srun --ntasks=2 inside array task 2 of 0-3: shard 2 * 2 + 1 of 4 * 2.
  both = {**_array(2, 4, 0, 3, 1), "SLURM_STEP_ID": "0", "SLURM_PROCID": "1"}
  both["SLURM_STEP_NUM_TASKS"] = "2"
  assert _index(both) == (5, 8)
  # Explicit flags win over the environment.
  assert shards.resolve("0/1", None, None, env=both) == shards.Shard(0, 1, "--shard 0/1")
  assert shards.resolve(None, None, None, env=both).index == 5
  assert shards.resolve(None, None, None, env={}) is None


def test_read_list(tmp_path):
  listed = tmp_path / "list.txt"
  listed.write_text("# the archive\n\n  a/b.mp4  \nc d.png\n   # indented comment\nsub/\n")
  assert shards.read_list(str(listed)) == ["a/b.mp4", "c d.png", "sub/"]
  with pytest.raises(errors.UserError, match="cannot read the --files-from list"):
    shards.read_list(str(tmp_path / "none.txt"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_generator_workdir(tmp_path_factory.mktemp("run"))


def _exit_status(argv, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.run(colorize.main, [str(a) for a in argv])
  captured = capsys.readouterr()
  return exit_info.value.code, captured.out, captured.err


def test_the_command_writes_every_output_once_over_its_shards(workdir, tmp_path, capsys):
  src = write_photo_folder(tmp_path / "in", n=5, size=(16, 12))
  out = tmp_path / "out"
  seen = []
  for k, flags in enumerate([["--shard", "0/3"], ["--shard-index", 1, "--num-shards", 3]]):
    code, stdout, err = _exit_status(["--workdir", workdir, src, "-o", out, *flags], capsys)
    assert code == 0, err
    assert f"shard {k}/3 (" in stdout and "2 of 5 inputs" in stdout
    seen += [line.split(" -> ")[1].split(":")[0] for line in stdout.splitlines() if " -> " in line]
  # The last shard from SLURM's variables, on array ids 4-6.
  with pytest.MonkeyPatch.context() as patch:
    for name, value in _array(6, 3, 4, 6, 1).items():
      patch.setenv(name, value)
    code, stdout, err = _exit_status(["--workdir", workdir, src, "-o", out], capsys)
  assert code == 0, err
  assert "shard 2/3 (SLURM array task 6, 3 of 3): 1 of 5 inputs" in stdout
  seen += [line.split(" -> ")[1].split(":")[0] for line in stdout.splitlines() if " -> " in line]
  assert sorted(seen) == sorted(str(out / f"{i}.png") for i in range(5))
  assert sorted(os.listdir(out)) == [f"{i}.png" for i in range(5)]


def test_files_from_reads_inputs_relative_to_the_current_directory(
  workdir, tmp_path, capsys, monkeypatch
):
  write_photo_folder(tmp_path / "in", n=3, size=(16, 12))
  (tmp_path / "lists").mkdir()
  listed = tmp_path / "lists" / "inputs.txt"
  listed.write_text("# two of three\nin/0.png\n\n  in/2.png\n")
  monkeypatch.chdir(tmp_path)
  code, stdout, err = _exit_status(
    ["--workdir", workdir, "in/1.png", "--files-from", listed, "-o", "out"], capsys
  )
  assert code == 0, err
  assert "done: 3 of 3 inputs colourised" in stdout
  assert sorted(os.listdir("out")) == ["0.png", "1.png", "2.png"]


@pytest.mark.parametrize(
  "flags,line",
  [
    (["in", "--shard", "3/3"], "error: --shard 3/3: shard 3 does not exist"),
    (["in", "--shard", "1-3"], "error: --shard 1-3: expected K/N"),
    (["in", "--shard-index", "1"], "error: --shard-index and --num-shards go together"),
    (["--files-from", "none.txt"], "error: none.txt: cannot read the --files-from list"),
    (["--files-from", "empty.txt"], "error: empty.txt: the --files-from list holds no inputs"),
  ],
)
def test_bad_shard_or_list_is_one_line_and_exit_1(flags, line, tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
  code, _, err = _exit_status(["--workdir", "w", *flags, "-o", "out"], capsys)
  assert code == 1
  assert err.startswith(line) and err.count("\n") == 1, err


def test_no_input_at_all_is_a_usage_error(capsys):
  with pytest.raises(SystemExit) as exit_info:
    colorize.main(["--workdir", "w", "-o", "out"])
  assert exit_info.value.code == 2
  assert "give INPUT files, folders or globs, or --files-from LIST" in capsys.readouterr().err
