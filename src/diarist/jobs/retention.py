"""Deletes what the service promises not to keep: job outputs after a day, uploads after two.

The server runs `expire` now and then (`jobs.background.Periodic`).
"""

from __future__ import annotations

import logging
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
