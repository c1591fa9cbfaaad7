"""One output, one writer: a second process is refused in one line naming the first and touches
nothing of it; a dead holder's lock is taken over; a finished holder leaves no lock file."""

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO, subprocess_env

from pix2pix_jax import files, locks

# Holds argv[1]'s output lock, writes the output, says "held", and finishes at end of stdin.
_HOLDER = """
import sys
from pix2pix_jax import locks

with locks.output_lock(sys.argv[1]):
  open(sys.argv[1], "w").write("first")
  print("held", flush=True)
  sys.stdin.read()
"""

# A command that writes argv[1] under its lock: one error line and exit 1 if refused.
_SECOND = """
import sys
from pix2pix_jax import cli, locks

def main(argv):
  with locks.output_lock(sys.argv[1]):
    open(sys.argv[1], "w").write("second")
  return 0

cli.run(main)
"""


def _python(code: str, *args: str, **kwargs) -> list[str]:
  return [sys.executable, "-c", textwrap.dedent(code), *args]


def _start_holder(dst: str) -> subprocess.Popen:
  holder = subprocess.Popen(
    _python(_HOLDER, dst),
    env=subprocess_env(),
    cwd=REPO,
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    text=True,
  )
  assert holder.stdout.readline().strip() == "held"
  return holder


def test_a_second_process_is_refused_naming_the_first_and_touches_nothing(tmp_path):
  dst = str(tmp_path / "out.mp4")
  lock_path = locks.output_lock_path(dst)
  assert lock_path == str(tmp_path / ".out.mp4.lock")
  holder = _start_holder(dst)
  try:
    before = open(lock_path).read(), os.stat(lock_path).st_ino
    owner = json.loads(before[0])
    assert owner["pid"] == holder.pid and owner["host"] == socket.gethostname()
    second = subprocess.run(
      _python(_SECOND, dst), env=subprocess_env(), cwd=REPO, capture_output=True, text=True
    )
    assert second.returncode == 1, second.stderr
    expected = f"error: {dst}: being written by pid {holder.pid} on host {socket.gethostname()} ("
    assert second.stderr.startswith(expected), second.stderr
    assert second.stderr.rstrip().endswith("wait for it to finish or choose another output")
    assert second.stderr.count("\n") == 1, second.stderr  # one line, no traceback
    with pytest.raises(locks.OutputLockedError, match=f"pid {holder.pid} on host ") as refused:
      with locks.output_lock(dst):
        pass
    assert isinstance(refused.value, files.MediaError)  # colourise's per-input error
    assert (open(lock_path).read(), os.stat(lock_path).st_ino) == before
    assert open(dst).read() == "first"
  finally:
    holder.stdin.close()  # the holder finishes normally
    assert holder.wait(timeout=30) == 0
  assert sorted(os.listdir(tmp_path)) == ["out.mp4"]  # its lock file is gone
  with locks.output_lock(dst):  # and the output is free
    assert os.path.exists(lock_path)
  assert sorted(os.listdir(tmp_path)) == ["out.mp4"]


def test_a_killed_holders_lock_is_taken_over(tmp_path, caplog):
  dst = str(tmp_path / "sub" / "x.png")  # the folder is created
  holder = _start_holder(dst)
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  lock_path = locks.output_lock_path(dst)
  assert json.loads(open(lock_path).read())["pid"] == holder.pid  # left on disk, not held
  with locks.output_lock(dst):
    assert json.loads(open(lock_path).read())["pid"] == os.getpid()
  assert f"from pid {holder.pid} on host" in caplog.text and "no longer running" in caplog.text
  assert os.listdir(tmp_path / "sub") == ["x.png"]


def test_a_lock_file_of_a_dead_process_does_not_block(tmp_path):
  dst = tmp_path / "x.png"
  lock_path = tmp_path / ".x.png.lock"
  lock_path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": 0}) + "\n")
  with locks.output_lock(str(dst)):
    assert json.loads(lock_path.read_text())["pid"] == os.getpid()
  assert not lock_path.exists()


def test_a_lock_file_removed_by_its_holder_is_not_a_lock(tmp_path, monkeypatch):
  """The lock-file protocol: a file locked after its holder removed it is left for the one now
  at the path (else two writers would each hold a lock, on two files)."""
  path = str(tmp_path / ".x.lock")
  lock = locks._lock
  calls = []

  def lock_after_the_holder_left(fd, subject):
    if not calls:  # as if a holder removed the file between our open and our flock
      os.remove(path)
      open(path, "w").close()
    calls.append(os.fstat(fd).st_ino)
    return lock(fd, subject)

  monkeypatch.setattr(locks, "_lock", lock_after_the_holder_left)
  with locks.exclusive(path, subject="x", refusal=AssertionError, remove=True) as locked:
    assert locked and len(calls) == 2 and calls[1] == os.stat(path).st_ino
  assert not os.path.exists(path)


def test_many_writers_never_hold_one_output_at_once(tmp_path):
  """Processes racing for one output, each taking and releasing it over and over: whoever holds
  it is alone (an exclusive marker file), and every refusal names a holder."""
  race = """
  import os, sys
  from pix2pix_jax import locks

  dst, held, refused = sys.argv[1], 0, 0
  for _ in range(500):
    try:
      with locks.output_lock(dst):
        os.close(os.open(dst + ".mine", os.O_CREAT | os.O_EXCL))  # FileExistsError: not alone
        os.remove(dst + ".mine")
        held += 1
    except locks.OutputLockedError as e:
      assert " being written by " in str(e), e
      refused += 1
  print(held, refused)
  """
  dst = str(tmp_path / "x.png")
  runs = [
    subprocess.Popen(
      _python(race, dst), env=subprocess_env(), cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    for _ in range(3)
  ]
  counts = [run.communicate(timeout=60)[0].split() for run in runs]
  assert all(run.returncode == 0 for run in runs), counts
  held, refused = (sum(int(c[i]) for c in counts) for i in (0, 1))
  assert held > 0 and refused > 0, counts  # they did meet
  assert os.listdir(tmp_path) == []


def test_without_flock_it_warns_and_goes_on(tmp_path, monkeypatch, caplog):
  def no_flock(fd, operation):
    raise OSError(errno.ENOLCK, "No locks available")

  monkeypatch.setattr(fcntl, "flock", no_flock)
  dst = str(tmp_path / "x.png")
  with locks.output_lock(dst):
    pass
  assert f"{dst}: the filesystem does not support locks (No locks available)" in caplog.text
  assert os.listdir(tmp_path) == []
