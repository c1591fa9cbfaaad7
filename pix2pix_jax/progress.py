"""Progress of long work on stderr: count, rate and ETA, as a bar redrawn in place on a terminal
and one summary line at the end elsewhere (docs/video.md, "Progress output").
"""

import argparse
import math
import sys
import time
from typing import Any, TextIO

_REDRAW_SECONDS = 0.2
_BAR_WIDTH = 24


def add_quiet_flag(parser: argparse.ArgumentParser) -> None:
  """--quiet (-q; --no-progress is the same flag): no progress bars or summary lines."""
  parser.add_argument(
    "--quiet",
    "-q",
    "--no-progress",
    dest="quiet",
    action="store_true",
    help="no progress bars or progress summary lines (results and errors still print)",
  )


class Progress:
  """Counts work done towards `total` (None or 0: unknown, no bar or ETA) in `unit`s."""

  def __init__(
    self,
    name: str,
    total: int | None,
    *,
    unit: str = "items",
    stream: TextIO | None = None,
    enabled: bool = True,
  ):
    self.name, self.total, self.unit, self.done = name, total or 0, unit, 0
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.start = self._last = time.perf_counter()
    self._closed = False

  def update(self, n: int) -> None:
    self.done += n
    now = time.perf_counter()
    if self.enabled and self._tty and now - self._last >= _REDRAW_SECONDS:
      self._last = now
      self._write("\r" + self.bar(now))

  def rate(self, now: float | None = None) -> float:
    elapsed = (now or time.perf_counter()) - self.start
    return self.done / elapsed if elapsed > 0 else 0.0

  def bar(self, now: float | None = None) -> str:
    """The terminal line: bar (when the total is known), count, rate and ETA."""
    rate = self.rate(now)
    text = f"{self.name} "
    if self.total:
      filled = int(_BAR_WIDTH * min(self.done / self.total, 1.0))
      text += f"[{'#' * filled}{'-' * (_BAR_WIDTH - filled)}] {self.done}/{self.total}"
    else:
      text += str(self.done)
    text += f" {self.unit} {rate:.1f} {self.unit}/s"
    if self.total:
      left = max(self.total - self.done, 0) / rate if rate > 0 else math.inf
      eta = time.strftime("%H:%M:%S", time.gmtime(left)) if math.isfinite(left) else "--:--:--"
      text += f" ETA {eta}"
    return text

  def summary(self) -> str:
    """The one line written at the end where stderr is not a terminal."""
    now = time.perf_counter()
    count = f"{self.done}/{self.total}" if self.total else str(self.done)
    return (
      f"{self.name}: {count} {self.unit} in {now - self.start:.1f} s, "
      f"{self.rate(now):.1f} {self.unit}/s"
    )

  def message(self, text: str, stream: TextIO | None = None) -> None:
    """Prints a line (to stdout by default) without tearing the bar on a terminal."""
    drawn = self.enabled and self._tty and not self._closed
    if drawn:
      self._write("\r\x1b[K")
    print(text, file=stream or sys.stdout, flush=True)
    if drawn:
      self._write("\r" + self.bar())

  def close(self) -> None:
    """Final bar and newline on a terminal, else the summary line; only the first call writes."""
    if self._closed or not self.enabled:
      self._closed = True
      return
    self._closed = True
    self._write(("\r" + self.bar() + "\n") if self._tty else (self.summary() + "\n"))

  def _write(self, text: str) -> None:
    self.stream.write(text)
    self.stream.flush()

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
