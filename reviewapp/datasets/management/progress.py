"""A progress bar for the terminal: redrawn in place on a TTY, a line per step otherwise
(logs stay readable), never more often than a few times a second."""

import shutil
import sys
import time

from django.core.management.base import OutputWrapper


class ProgressBar:
    def __init__(
        self, *, label: str, unit: str, stream=None, min_interval: float = 0.2, rate: bool = True
    ):
        self.label = label
        self.unit = unit
        self.rate = rate
        self.stream = stream or sys.stderr
        self.min_interval = min_interval
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.last_percent = -1
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def _write(self, text: str) -> None:
        if isinstance(self.stream, OutputWrapper):  # it would end every write with a newline
            self.stream.write(text, ending="")
        else:
            self.stream.write(text)

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        percent = 100 * done // total if total else 100
        if self.tty:
            if now - self.drawn_at < self.min_interval and done < total:
                return
            self._write("\r" + self._line(done, total, percent, now))
        else:
            if percent // 10 == self.last_percent // 10 and done < total:
                return
            self._write(self._line(done, total, percent, now) + "\n")
        self.stream.flush()
        self.drawn_at, self.last_percent = now, percent

    def _line(self, done: int, total: int, percent: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        text = f" {percent:3d}%"
        if self.rate:
            text += f" {done:,}/{total:,} {self.unit} {done / elapsed:,.0f} {self.unit}/s"
        else:
            text += f" {elapsed:,.0f} s"
        width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - len(text) - 20))
        filled = width * percent // 100
        return f"{self.label} [{'#' * filled}{'.' * (width - filled)}]{text}"

    def close(self) -> None:
        if self.tty:
            self._write("\n")
            self.stream.flush()
