"""The secret that signs media URLs, one for every replica of the service."""

from __future__ import annotations

import contextlib

from sqlalchemy.exc import IntegrityError

from diarist.jobs.store.core import Core
from diarist.jobs.tables import ServerSecret, utcnow


class SigningSecretMixin(Core):
    """The store's URL signing secret."""

    def signing_secret(self, candidate: str) -> str:
        """The secret every replica signs URLs with: the stored one, else `candidate`, stored now.

        Replicas starting together may all try to store theirs: the primary key lets one insert
        win, and the others read the winner's.
        """
        with self.reading() as session:
            row = session.get(ServerSecret, 1)
        if row is None:
            with contextlib.suppress(IntegrityError), self.writing() as session:
                session.add(ServerSecret(id=1, value=candidate, created_at=utcnow()))
            with self.reading() as session:
                row = session.get(ServerSecret, 1)
        assert row is not None  # inserted by us or by the replica that won
        return row.value
