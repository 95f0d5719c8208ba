"""Background loops that must outlive transient failures, and what they tell `/health`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diarist.errors import DiaristError

log = logging.getLogger("diarist.jobs")
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0


def backoff(failures: int) -> float:
    """Seconds to wait after `failures` failures in a row: 1, 2, 4 … up to 30."""
    return min(BACKOFF_FIRST_SECONDS * 2 ** max(0, failures - 1), BACKOFF_MAX_SECONDS)


@dataclass
class LoopHealth:
    """How a background loop is doing: the time of its last success and its failures since."""

    last_success: float | None = None  # epoch seconds
    last_error: str | None = None
    failures: int = 0  # in a row; 0 after a success

    def succeeded(self) -> None:
        self.last_success, self.failures = time.time(), 0

    def failed(self, error: BaseException) -> None:
        # Only diarist's own messages are shown: others may quote SQL, paths or webhook URLs.
        self.last_error = str(error) if isinstance(error, DiaristError) else type(error).__name__
        self.failures += 1

    def report(self, alive: bool) -> dict[str, Any]:
        """`{ok, alive, lastSuccess, lastError, failures}`: ok while alive and its last attempt worked."""
        return {
            "ok": alive and self.failures == 0,
            "alive": alive,
            "lastSuccess": None if self.last_success is None else round(self.last_success, 3),
            "lastError": self.last_error,
            "failures": self.failures,
        }


class Periodic:
    """Calls `tick` at once, then every `interval` seconds, in a daemon thread.

    A failing tick is logged and tried again after a growing delay (`backoff`); the loop itself
    never ends before `stop`.
    """

    def __init__(self, name: str, interval: float, tick: Callable[[], None]):
        self.name, self.interval, self.tick = name, interval, tick
        self.health = LoopHealth()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def report(self) -> dict[str, Any]:
        return self.health.report(self._thread.is_alive())

    def _run(self) -> None:
        while True:
            try:
                self.tick()
                self.health.succeeded()
                delay = self.interval
            except Exception as e:
                self.health.failed(e)
                delay = backoff(self.health.failures)
                log.exception("%s failed (%d in a row); trying again in %g s", self.name, self.health.failures, delay)
            if self._stop.wait(delay):
                return
