"""Uploads (`media://` names): recorded per key within its storage quota, looked up, expired."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from diarist.errors import DiaristError
from diarist.jobs.store.core import Core
from diarist.jobs.tables import Media, utcnow

GIB = 1024**3


class StorageQuotaError(DiaristError):
    """The key's uploads would take more room than its storage quota."""


def storage_quota_message(total: int, quota: int) -> str:
    """Why an upload does not fit in the key's storage quota."""
    return (
        f"This upload would bring this key's stored media to {total} bytes, over its storage quota of "
        f"{quota} bytes ({quota / GIB:.3g} GiB). Uploads are deleted a while after they were written; "
        "uploading again under an existing media:// name replaces that file."
    )


def _storage_used(session: Session, key_id: str, excluding: str | None) -> int:
    query = select(func.coalesce(func.sum(Media.size), 0)).where(Media.key_id == key_id)
    if excluding is not None:
        query = query.where(Media.object_key != excluding)
    return int(session.scalar(query) or 0)


class MediaMixin(Core):
    """The store's records of uploads; the files themselves are the media store's."""

    def record_upload(
        self, key_id: str, object_key: str, size: int, quota_bytes: int = 0, origin: str | None = None
    ) -> None:
        """Record an upload (replacing one of the same name) held by the replica at `origin`; StorageQuotaError
        when the key's uploads would then take more than `quota_bytes` (0: no limit)."""
        with self.writing() as session:
            if quota_bytes:
                others = _storage_used(session, key_id, object_key)
                if others + size > quota_bytes:
                    raise StorageQuotaError(storage_quota_message(others + size, quota_bytes))
            session.merge(Media(key_id=key_id, object_key=object_key, size=size, uploaded_at=utcnow(), origin=origin))

    def storage_used(self, key_id: str, excluding: str | None = None) -> int:
        """Bytes of the key's uploads, without the one named `excluding` (about to be replaced)."""
        with self.reading() as session:
            return _storage_used(session, key_id, excluding)

    def get_media(self, key_id: str, object_key: str) -> Media | None:
        return self.rows(Media).get(key_id, object_key)

    def expire_media(self, uploaded_before: datetime) -> list[Media]:
        with self.writing() as session:
            return list(
                session.scalars(
                    delete(Media).where(Media.uploaded_at < uploaded_before).returning(Media),
                    execution_options={"synchronize_session": False},
                )
            )
