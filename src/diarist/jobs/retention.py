"""Deletes what the service promises not to keep: job outputs after a day, uploads after two,
and uploads a crash left half-written; and the rows of workers gone for a day.

The server runs `expire` now and then (`jobs.background.Periodic`).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

from diarist.jobs.media import MediaStore
from diarist.jobs.store import Store
from diarist.jobs.tables import utcnow

log = logging.getLogger("diarist.retention")
GONE_WORKER_TTL = timedelta(days=1)


def expire(
    store: Store,
    media: MediaStore,
    downloads: Path,
    result_ttl: timedelta,
    media_ttl: timedelta,
    part_ttl: timedelta = timedelta(hours=1),
) -> None:
    """One sweep: outputs of jobs ended before `result_ttl`, uploads older than `media_ttl`, and
    half-written uploads untouched for `part_ttl` (left by a crash; a live upload keeps writing)."""
    now = utcnow()
    outputs = store.expire_outputs(now - result_ttl)
    uploads = store.expire_media(now - media_ttl)
    for item in uploads:
        media.delete(item.key_id, item.object_key)
    # Downloads are removed when their job ends; these are left over from a crash.
    stale = time.time() - media_ttl.total_seconds()
    # Uploads held here whose row another replica expired (the file's time is the row's upload time).
    media.delete_older_than(stale)
    for path in downloads.glob("*") if downloads.exists() else []:
        if path.stat().st_mtime < stale:
            path.unlink(missing_ok=True)
    parts = media.delete_stale_parts(time.time() - part_ttl.total_seconds())
    # A worker killed without a clean stop leaves its row; it long stopped counting in the fleet.
    store.forget_workers(now - GONE_WORKER_TTL)
    if outputs or uploads or parts:
        log.info(
            "deleted %d job outputs, %d uploads past their retention and %d unfinished uploads",
            outputs,
            len(uploads),
            parts,
        )
