"""A daemon thread that calls one function every few seconds until it is stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("diarist.jobs")


class Periodic:
    """Calls `tick` at once, then every `interval` seconds; a failing tick is logged and retried."""

    def __init__(self, name: str, interval: float, tick: Callable[[], None]):
        self.name, self.interval, self.tick = name, interval, tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("%s failed; trying again in %g s", self.name, self.interval)
            if self._stop.wait(self.interval):
                return
