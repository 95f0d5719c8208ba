"""A key's audio quota: the seconds its unfinished jobs hold, and the seconds its finished jobs used.

Both change inside the transaction that creates, reserves for or ends a job, so the two figures never drift
from the jobs themselves.
"""

from __future__ import annotations

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from diarist.errors import DiaristError
from diarist.jobs.tables import ApiKey, Job


class QuotaExceededError(DiaristError):
    """The key's audio quota cannot hold this job's audio."""


def quota_message(key: ApiKey, seconds: float) -> str:
    """Why a job's audio does not fit in the key's quota, in the user's terms."""
    held = f"{key.used_seconds:.1f} s used and {key.reserved_seconds:.1f} s held by unfinished jobs"
    quota = f"This key's quota of {key.quota_seconds / 3600:g} hours of audio"
    if seconds:
        return f"{quota} cannot take this audio's {seconds:.1f} s: {held}."
    return f"{quota} is used up: {held}."


def reserve(session: Session, key_id: str, seconds: float) -> None:
    """Hold `seconds` of audio on the key's quota; QuotaExceededError when they do not fit, or it is used up."""
    # One conditional UPDATE: concurrent reservations are serialized by the database itself. No key is
    # loaded in the session to keep in step: the ORM's check of it was a third of the statement's time.
    held = ApiKey.used_seconds + ApiKey.reserved_seconds
    fits = or_(ApiKey.quota_seconds.is_(None), (held + seconds <= ApiKey.quota_seconds) & (held < ApiKey.quota_seconds))
    done = session.execute(
        update(ApiKey).where(ApiKey.id == key_id, fits).values(reserved_seconds=ApiKey.reserved_seconds + seconds),
        execution_options={"synchronize_session": False},
    )
    if done.rowcount != 1:
        key = session.get(ApiKey, key_id)
        raise QuotaExceededError(quota_message(key, seconds) if key else f"Unknown API key {key_id}.")


def settle(session: Session, job: Job, used_seconds: float = 0.0) -> None:
    """A job ended: give back what it held on the quota, and count what it used."""
    if job.reserved_seconds or used_seconds:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == job.key_id)
            .values(
                reserved_seconds=ApiKey.reserved_seconds - job.reserved_seconds,
                used_seconds=ApiKey.used_seconds + used_seconds,
            ),
            execution_options={"synchronize_session": False},
        )
