"""How far a file is, on stderr: a bar on a terminal, plain lines in a log.

Both hear the run's fraction done: `hooks.Fraction(display)` is the listener to a run's steps.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

LONG_FILE_SECONDS = 60.0  # show progress on stderr from this duration on
PROGRESS_LINE_SECONDS = 10.0  # without a terminal: a line at each 10 % step, and at least this often


class ProgressLines:
    """Plain `diarist: NAME: 40%` lines, for logs: at each 10 % step, and at least every 10 s.

    It hears the run's fraction done: `Fraction(lines)` is the listener to a run's steps.
    """

    def __init__(self, name: str):
        self.name = name
        self.next_step, self.last = 10, time.monotonic()
        self.lock = threading.Lock()  # transcription reports from a second thread

    def __call__(self, fraction: float) -> None:
        percent = int(100 * fraction)
        with self.lock:
            now = time.monotonic()
            if percent < self.next_step and now - self.last < PROGRESS_LINE_SECONDS:
                return
            self.next_step, self.last = (percent // 10 + 1) * 10, now
            print(f"diarist: {self.name}: {percent}%", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Nothing to clear: every line is already complete."""


class ProgressBar:
    """A tqdm bar on the terminal, erased when the file is done; it hears fractions, as ProgressLines does."""

    def __init__(self, name: str):
        from tqdm import tqdm

        bar_format = "{l_bar}{bar}| {elapsed}<{remaining}"
        self.bar = tqdm(total=100, desc=name, unit="%", file=sys.stderr, leave=False, bar_format=bar_format)
        self.lock = threading.Lock()

    def __call__(self, fraction: float) -> None:
        with self.lock:
            self.bar.update(round(100 * fraction) - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def progress_display(path: Path, duration: float) -> ProgressBar | ProgressLines | None:
    """How to show progress on stderr: none for short files, a bar on a terminal, else lines."""
    if duration < LONG_FILE_SECONDS:
        return None
    return ProgressBar(path.name) if sys.stderr.isatty() else ProgressLines(path.name)
