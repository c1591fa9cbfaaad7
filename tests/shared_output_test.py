"""One output folder written from several hosts: a run removes only its own host's leftovers."""

import glob
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import make_clip, start_colorize, start_process, tiny_generator_workdir

from pix2pix_jax import files
from pix2pix_jax.colorize.video import probe


def _dead_pid():
  return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, check=True).stdout)  # fmt: skip


def test_temp_names_carry_the_host_and_pid_namespace(tmp_path):
  name = os.path.basename(files.temp_name(str(tmp_path / "clip.mp4"), "partial"))
  here = files.where()
  assert name.startswith(f".clip.{os.getpid()}@{here}-") and name.endswith(".partial.mp4")
  host = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "_" for c in os.uname()[1])
  assert here == f"{host[:40]}-p{os.stat('/proc/self/ns/pid').st_ino}"


@pytest.mark.integration
def test_only_this_hosts_dead_leftovers_are_removed(tmp_path):
  dead = _dead_pid()
  ours_running = files.sibling_temp(str(tmp_path / "a.mp4"), "partial")
  ours_dead = tmp_path / f".a.{dead}@{files.where()}-0123abcd.video.mp4"
  other_host = tmp_path / f".a.{dead}@other-host-p4026531836-0123abcd.partial.mp4"
  other_namespace = tmp_path / f".a.{dead}@{files.where()}9-0123abcd.partial.mp4"
  hostless = tmp_path / f".a.{dead}-0123abcd.partial.mp4"
  for path in (ours_dead, other_host, other_namespace, hostless):
    path.write_bytes(b"half")
  assert files.remove_stale_temps(str(tmp_path)) == [str(ours_dead)]
  assert sorted(os.listdir(tmp_path)) == sorted(
    os.path.basename(str(p)) for p in (ours_running, other_host, other_namespace, hostless)
  )
  assert files.hostless_temps(str(tmp_path)) == [str(hostless)]


def test_a_run_reports_hostless_leftovers_and_leaves_them(tmp_path, capsys):
  from PIL import Image

  from pix2pix_jax.colorize import main as colorize

  Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
  out = tmp_path / "out"
  out.mkdir()
  Image.new("RGB", (8, 8)).save(out / "p.png")
  old = out / f".q.{_dead_pid()}-0123abcd.partial.png"
  old.write_bytes(b"half")
  argv = ["--workdir", str(tmp_path / "none"), str(tmp_path / "p.png"), "-o", str(out)]
  assert colorize.main([*argv, "--skip-existing"]) == 0
  assert old.exists()
  assert f"left 1 temporary file(s) named without a host in {out} alone" in capsys.readouterr().out


def _can_unshare():
  """None if two "hosts" can be made here, else why not. A host is a PID + UTS namespace
  (`unshare -p -f -u --mount-proc`, root only): its own host name and process ids, as each of two
  machines writing one network folder has."""
  try:
    result = subprocess.run(
      ["unshare", "-p", "-f", "-u", "--mount-proc", "sh", "-c", "hostname x"],
      capture_output=True,
      timeout=30,
    )
  except (OSError, subprocess.TimeoutExpired) as e:
    return str(e)
  return None if result.returncode == 0 else result.stderr.decode().strip() or "failed"


def _on_host(host, argv, *, first_pid_high=False):
  """pix2pix-colorize in new PID + UTS namespaces named `host`. first_pid_high: start a few
  processes first, so that the command's pid there is one the other namespace does not use
  (with the old names, the other host then took it for a dead process's)."""
  command = " ".join([sys.executable, "-m", "pix2pix_jax.colorize.main", *map(str, argv)])
  warm = "for i in $(seq 30); do /bin/true; done; " if first_pid_high else ""
  script = f"hostname {host}; {warm}{command}; exit $?"
  return start_process(["unshare", "-p", "-f", "-u", "--mount-proc", "sh", "-c", script])


def _descendants(pid):
  found, todo = [], [pid]
  while todo:
    parent = todo.pop()
    for task in glob.glob(f"/proc/{parent}/task/*/children"):
      try:
        with open(task) as f:
          children = [int(c) for c in f.read().split()]
      except OSError:
        continue
      found += children
      todo += children
  return found


@pytest.mark.integration
def test_two_hosts_writing_one_folder_leave_each_others_files_alone(tmp_path):
  reason = _can_unshare()
  if reason is not None:
    pytest.skip(f"cannot make PID + UTS namespaces here (unshare: {reason})")
  workdir = tiny_generator_workdir(tmp_path / "run")
  long_clip = make_clip(str(tmp_path / "long.mp4"), audio="aac", seconds=4)
  short_clip = make_clip(str(tmp_path / "short.mp4"), audio="aac", seconds=1)
  out = tmp_path / "out"
  out.mkdir()
  common = ["--workdir", workdir, "-o", out, "--batch-size", "4", "--no-progress"]

  # Host A colourises the long clip; it is frozen (SIGSTOP) once its temporary files exist, so
  # that host B's whole run falls inside A's, whatever the machine's speed.
  a = _on_host("hostA", [long_clip, *common], first_pid_high=True)
  deadline = time.monotonic() + 300
  while not glob.glob(str(out / ".long.*.video.mp4")):
    assert a.poll() is None, a.communicate()
    assert time.monotonic() < deadline, "host A wrote no temporary file"
    time.sleep(0.02)
  frozen = _descendants(a.pid)
  for pid in frozen:
    os.kill(pid, signal.SIGSTOP)
  try:
    a_files = sorted(os.listdir(out))
    # A's temporary files carry its host; the output's lock file has the output's name.
    assert [n for n in a_files if n.endswith(".lock")] == [".long.mp4.lock"], a_files
    assert all("@hostA-" in name for name in a_files if not name.endswith(".lock")), a_files
    b = _on_host("hostB", [short_clip, *common, "--skip-existing"])
    b_out, b_err = b.communicate(timeout=600)
    assert b.returncode == 0, b_err
    assert "removed" not in b_out, b_out
    # B left A's files alone and wrote its own output, complete.
    assert sorted(os.listdir(out)) == sorted([*a_files, "short.mp4"])
  finally:
    for pid in frozen:
      os.kill(pid, signal.SIGCONT)
  a_out, a_err = a.communicate(timeout=600)
  assert a.returncode == 0, a_err
  assert sorted(os.listdir(out)) == ["long.mp4", "short.mp4"]
  assert probe.count_frames(str(out / "long.mp4")) == 100
  assert probe.count_frames(str(out / "short.mp4")) == 25
  assert probe.probe(str(out / "long.mp4")).audio_codec == "aac"


@pytest.mark.integration
def test_a_second_writer_of_one_output_is_refused_and_touches_nothing(tmp_path):
  workdir = tiny_generator_workdir(tmp_path / "run")
  clip = make_clip(str(tmp_path / "long.mp4"), audio="aac", seconds=8)
  out = tmp_path / "out"
  out.mkdir()
  dst = out / "long.mp4"
  first = start_colorize(workdir, clip, dst)
  deadline = time.monotonic() + 300
  while not glob.glob(str(out / ".long.*.video.mp4")):
    assert first.poll() is None, first.communicate()
    assert time.monotonic() < deadline, "the first run wrote no temporary file"
    time.sleep(0.02)
  frozen = _freeze(first.pid)  # so that it is still writing meanwhile
  try:
    before = _settled_listing(out)
    assert ".long.mp4.lock" in before
    second = start_colorize(workdir, clip, dst, "--overwrite")
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert re.fullmatch(
      rf"error: {re.escape(str(dst))}: being written by pid {first.pid} on host "
      rf"{re.escape(socket.gethostname())} \(since .*\); wait for it to finish or choose "
      "another output",
      errors[0],
    ), errors
    assert _listing(out) == before
  finally:
    for pid in frozen:
      os.kill(pid, signal.SIGCONT)
  _, stderr = first.communicate(timeout=600)
  assert first.returncode == 0, stderr
  assert sorted(os.listdir(out)) == ["long.mp4"]
  assert probe.count_frames(str(dst)) == 200


def _freeze(pid):
  """SIGSTOPs `pid` and its descendants, again until no new child appears (one may be started
  while the others are being stopped); returns them all."""
  frozen = []
  while new := [p for p in [pid, *_descendants(pid)] if p not in frozen]:
    for p in new:
      os.kill(p, signal.SIGSTOP)
    frozen += new
  return frozen


def _listing(folder):
  return {n: (os.stat(folder / n).st_ino, os.stat(folder / n).st_size) for n in os.listdir(folder)}


def _settled_listing(folder):
  """The folder's names, inodes and sizes once two looks 0.2 s apart agree (writes already in
  flight when the writer was stopped land first)."""
  deadline = time.monotonic() + 30
  previous = _listing(folder)
  while time.monotonic() < deadline:
    time.sleep(0.2)
    current = _listing(folder)
    if current == previous:
      return current
    previous = current
  raise AssertionError(f"{folder} kept changing: {previous}")
