"""Live streams: created with a single-use token, claimed by the replica whose socket opens, ended once.

A stream's streamed seconds go on its key's quota when it ends, in the transaction that ends it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update

from diarist.errors import DiaristError
from diarist.jobs.store.core import Core
from diarist.jobs.tables import (
    STREAM_CREATED,
    STREAM_ERROR,
    STREAM_RUNNING,
    ApiKey,
    LiveStream,
    utcnow,
)


class LiveCapError(DiaristError):
    """Too many live streams are open: for the key, or on this replica."""


def _open(now: datetime):
    """Streams that hold a place: running, or created with a token that can still be used."""
    return or_(
        LiveStream.status == STREAM_RUNNING,
        (LiveStream.status == STREAM_CREATED) & (LiveStream.token_expires_at > now),
    )


class LiveMixin(Core):
    """The store's records of live streams."""

    def create_stream(
        self, key_id: str, options: dict, token_hash: str, ttl: float, replica: str, per_key: int, per_replica: int
    ) -> LiveStream:
        """A new stream with the request's `options`, whose socket opens with the token of `token_hash` within
        `ttl` seconds; LiveCapError when the key already has `per_key` open, or `replica` has `per_replica`."""
        now = utcnow()
        with self.writing() as session:
            for column, value, cap, who in (
                (LiveStream.key_id, key_id, per_key, "this key"),
                (LiveStream.replica, replica, per_replica, "this server"),
            ):
                held = session.scalar(select(func.count()).where(column == value, _open(now))) or 0
                if held >= cap:
                    raise LiveCapError(
                        f"{who.capitalize()} already has {held} live streams open, its limit: end one (send "
                        f'{{"type": "end_of_stream"}}) or try again later.'
                    )
            stream = LiveStream(
                id=str(uuid.uuid4()),
                key_id=key_id,
                status=STREAM_CREATED,
                token_hash=token_hash,
                token_expires_at=now + timedelta(seconds=ttl),
                created_at=now,
                replica=replica,
                seconds=0.0,
                options=options,
            )
            session.add(stream)
        return stream

    def get_stream(self, stream_id: str, key_id: str | None = None) -> LiveStream | None:
        """The stream, if it exists and (when `key_id` is given) belongs to that key."""
        with self.reading() as session:
            stream = session.get(LiveStream, stream_id)
            return stream if stream is not None and key_id in (None, stream.key_id) else None

    def claim_stream(self, stream_id: str, token_hash: str, replica: str) -> LiveStream | None:
        """Use the stream's token (once, before it expires) and mark it running on `replica`; None if refused."""
        now = utcnow()
        with self.writing() as session:
            done = session.execute(
                update(LiveStream)
                .where(
                    LiveStream.id == stream_id,
                    LiveStream.status == STREAM_CREATED,
                    LiveStream.token_hash == token_hash,
                    LiveStream.token_expires_at > now,
                )
                .values(status=STREAM_RUNNING, token_hash=None, started_at=now, seen_at=now, replica=replica)
            )
            return session.get(LiveStream, stream_id) if done.rowcount == 1 else None

    def touch_stream(self, stream_id: str, seconds: float) -> None:
        """A running stream is alive and has streamed `seconds` so far."""
        with self.writing() as session:
            session.execute(
                update(LiveStream)
                .where(LiveStream.id == stream_id, LiveStream.status == STREAM_RUNNING)
                .values(seen_at=utcnow(), seconds=seconds)
            )

    def end_stream(self, stream_id: str, status: str, seconds: float, error: str | None = None) -> bool:
        """End a running stream (once) and count its seconds on its key's quota; False if it was not running."""
        with self.writing() as session:
            stream = session.get(LiveStream, stream_id)
            if stream is None or stream.status != STREAM_RUNNING:
                return False
            stream.status, stream.seconds, stream.error = status, seconds, error
            stream.completed_at = utcnow()
            session.execute(
                update(ApiKey).where(ApiKey.id == stream.key_id).values(used_seconds=ApiKey.used_seconds + seconds)
            )
            return True

    def set_stream_job(self, stream_id: str, job_id: str) -> None:
        """The job that diarizes the stream's kept audio."""
        with self.writing() as session:
            session.execute(update(LiveStream).where(LiveStream.id == stream_id).values(job_id=job_id))

    def fail_stale_streams(self, seen_before: datetime, replica: str | None = None) -> list[str]:
        """End as errors the running streams whose replica stopped refreshing them (or, given `replica`, all of
        that replica's: it restarted, so none of them runs any more). Returns their ids."""
        with self.reading() as session:
            query = select(LiveStream.id, LiveStream.seconds).where(LiveStream.status == STREAM_RUNNING)
            if replica is None:
                query = query.where(LiveStream.seen_at < seen_before)
            else:
                query = query.where(LiveStream.replica == replica)
            stale = list(session.execute(query))
        ended = [
            stream_id
            for stream_id, seconds in stale
            if self.end_stream(stream_id, STREAM_ERROR, seconds, "The server running this stream stopped.")
        ]
        return ended
