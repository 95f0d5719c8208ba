"""The fleet's worker processes: each registers, shows it lives, and leaves."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update

from diarist.jobs.store.core import Core
from diarist.jobs.tables import Worker, db_now


class WorkersMixin(Core):
    """The store's register of worker processes."""

    def worker_seen(self, name: str, kind: str, queues: str = "", concurrency: int = 1) -> None:
        """Register a worker process, or refresh its `seen_at` while it lives (the database's clock)."""
        with self.writing() as session:
            done = session.execute(update(Worker).where(Worker.name == name).values(seen_at=db_now()))
            if done.rowcount == 0:
                now = session.scalar(select(db_now()))
                session.add(
                    Worker(name=name, kind=kind, queues=queues, concurrency=concurrency, started_at=now, seen_at=now)
                )

    def remove_worker(self, name: str) -> None:
        """A worker stopped cleanly: it leaves the fleet at once instead of when its row goes stale."""
        with self.writing() as session:
            session.execute(delete(Worker).where(Worker.name == name))

    def forget_workers(self, seen_before: datetime) -> int:
        """Delete the rows of workers not seen since `seen_before`; how many."""
        with self.writing() as session:
            return session.execute(delete(Worker).where(Worker.seen_at < seen_before)).rowcount

    def live_workers(self, seen_within: float) -> list[Worker]:
        """The workers seen in the last `seen_within` seconds."""
        with self.reading() as session:
            live = select(Worker).where(Worker.seen_at >= db_now(-seen_within)).order_by(Worker.name)
            return list(session.scalars(live))
