"""The job store: API keys, jobs, uploads and pending webhooks, in one SQL database.

One module per topic (`keys`, `jobs`, `quota`, `leases`, `live`, `workers`, `media`, `webhooks`, `signing`),
each a mixin that reads and writes through the session core (`core`); `Store` puts them together. Import from here.
"""

from diarist.jobs.store.core import (
    Core,
    alembic_config,
    database_errors,
    database_url,
    head_revision,
    known_revision,
    one_lock_wait,
)
from diarist.jobs.store.jobs import JobsMixin
from diarist.jobs.store.keys import KeysMixin, NewKey, admits, id_of_key
from diarist.jobs.store.leases import LeasesMixin
from diarist.jobs.store.live import LiveCapError, LiveMixin
from diarist.jobs.store.media import MediaMixin, StorageQuotaError, storage_quota_message
from diarist.jobs.store.quota import QuotaExceededError
from diarist.jobs.store.signing import SigningSecretMixin
from diarist.jobs.store.webhooks import WebhooksMixin
from diarist.jobs.store.workers import WorkersMixin

__all__ = [
    "LiveCapError",
    "NewKey",
    "QuotaExceededError",
    "StorageQuotaError",
    "Store",
    "admits",
    "alembic_config",
    "database_errors",
    "database_url",
    "head_revision",
    "id_of_key",
    "known_revision",
    "one_lock_wait",
    "storage_quota_message",
]


class Store(
    KeysMixin, JobsMixin, LeasesMixin, LiveMixin, WorkersMixin, MediaMixin, WebhooksMixin, SigningSecretMixin, Core
):
    """All reads and writes of service state. Records come back detached, safe to keep."""
