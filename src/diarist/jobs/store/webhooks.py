"""Pending webhook deliveries: added with a job's end, in its transaction, then leased to one dispatcher at a
time until delivered or given up."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from diarist.jobs.kinds import spec_of
from diarist.jobs.payloads import webhook_body
from diarist.jobs.store.core import Core
from diarist.jobs.tables import Job, WebhookDelivery, utcnow


def add_webhook(session: Session, job: Job) -> None:
    """Queue the webhook of a job that just ended, when its request names one."""
    url = spec_of(job).webhook
    if url:
        session.add(
            WebhookDelivery(
                job_id=job.id,
                key_id=job.key_id,
                url=url,
                body=webhook_body(job),
                attempts=0,
                due_at=utcnow(),
                delivered=False,
            )
        )


class WebhooksMixin(Core):
    """The store's webhook deliveries."""

    def claim_webhooks(self, limit: int, lease: timedelta) -> list[WebhookDelivery]:
        """Due deliveries, leased so that no other dispatcher sends them meanwhile."""
        now = utcnow()
        due = select(WebhookDelivery.id).where(
            WebhookDelivery.due_at <= now,
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
        )
        # Most polls find nothing due: a read answers them, without taking twice a second the write
        # lock that every submit waits for on SQLite.
        with self.reading() as session:
            if session.scalar(due.limit(1)) is None:
                return []
        due = due.order_by(WebhookDelivery.due_at).limit(limit).with_for_update(skip_locked=True)
        with self.writing() as session:
            return list(
                session.scalars(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(due))
                    .values(claimed_until=now + lease)
                    .returning(WebhookDelivery),
                    execution_options={"synchronize_session": False},
                )
            )

    def record_delivery(
        self, delivery_id: int, delivered: bool, status: int | None, reason: str | None, retry_at: datetime | None
    ) -> None:
        with self.writing() as session:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(
                    attempts=WebhookDelivery.attempts + 1,
                    delivered=delivered,
                    last_status=status,
                    last_reason=reason,
                    due_at=None if delivered else retry_at,
                    claimed_until=None,
                )
            )

    def deliveries(self, job_id: str) -> list[WebhookDelivery]:
        with self.reading() as session:
            return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)))
