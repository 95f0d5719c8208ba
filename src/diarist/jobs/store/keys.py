"""API keys: created with their secrets shown once, looked up by the key a client presents, revoked."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update

from diarist.jobs.store.core import Core
from diarist.jobs.tables import ApiKey, utcnow


@dataclass(frozen=True)
class NewKey:
    """A key as `keys create` shows it: the only time the secret parts are visible."""

    record: ApiKey
    key: str
    webhook_secret: str


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a plain digest is enough; no slow KDF is needed.
    return hashlib.sha256(key.encode()).hexdigest()


def id_of_key(key: str) -> str | None:
    """The public id inside a presented key (`dia_<id>_<secret>`); None for anything else."""
    parts = key.split("_", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "dia" else None


def admits(record: ApiKey, key: str) -> bool:
    """Whether `record` lets the presented `key` in: not revoked, and the key's hash is its own."""
    return record.revoked_at is None and hmac.compare_digest(record.key_hash, hash_key(key))


class KeysMixin(Core):
    """The store's API keys."""

    def create_key(
        self,
        name: str,
        rate_limit_per_minute: int | None = None,
        quota_hours: float | None = None,
        storage_quota_bytes: int | None = None,
    ) -> NewKey:
        key_id = secrets.token_hex(6)
        key = f"dia_{key_id}_{secrets.token_urlsafe(32)}"
        secret = f"whs_{secrets.token_urlsafe(32)}"
        record = ApiKey(
            id=key_id,
            name=name,
            key_hash=hash_key(key),
            webhook_secret=secret,
            rate_limit_per_minute=rate_limit_per_minute,
            quota_seconds=None if quota_hours is None else quota_hours * 3600.0,
            used_seconds=0.0,
            reserved_seconds=0.0,
            storage_quota_bytes=storage_quota_bytes,
            created_at=utcnow(),
        )
        with self.writing() as session:
            session.add(record)
        return NewKey(record, key, secret)

    def get_key(self, key_id: str) -> ApiKey | None:
        """The key's record, revoked or not (`admits` tells whether a presented key may in), or None."""
        return self.rows(ApiKey).get(key_id)

    def list_keys(self) -> list[ApiKey]:
        with self.reading() as session:
            return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))

    def revoke_key(self, key_id: str) -> bool:
        with self.writing() as session:
            done = session.execute(
                update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
        return done.rowcount == 1
