"""Deletes what the service promises not to keep: job outputs after a day, uploads after two."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

from diarist.jobs.media import MediaStore
from diarist.jobs.store import Store, utcnow

log = logging.getLogger("diarist.retention")


def expire(store: Store, media: MediaStore, downloads: Path, result_ttl: timedelta, media_ttl: timedelta) -> None:
    """One sweep: outputs of jobs ended before `result_ttl`, uploads older than `media_ttl`."""
    now = utcnow()
    outputs = store.expire_outputs(now - result_ttl)
    uploads = store.expire_media(now - media_ttl)
    for item in uploads:
        media.delete(item.key_id, item.object_key)
    # Downloads are removed when their job ends; these are left over from a crash.
    stale = time.time() - media_ttl.total_seconds()
    for path in downloads.glob("*") if downloads.exists() else []:
        if path.stat().st_mtime < stale:
            path.unlink(missing_ok=True)
    if outputs or uploads:
        log.info("deleted %d job outputs and %d uploads past their retention", outputs, len(uploads))


class Janitor:
    """Runs `expire` now and then in a background thread."""

    def __init__(self, interval: float, **kwargs):
        self.interval, self.kwargs = interval, kwargs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="janitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                expire(**self.kwargs)
            except Exception:
                log.exception("retention sweep failed; trying again later")
            if self._stop.wait(self.interval):
                return
