"""The job store, moving into one module per topic."""

from diarist.jobs.store.core import (
    QuotaExceededError,
    StorageQuotaError,
    Store,
    alembic_config,
    database_errors,
    database_url,
    head_revision,
    known_revision,
    storage_quota_message,
)

__all__ = [
    "QuotaExceededError",
    "StorageQuotaError",
    "Store",
    "alembic_config",
    "database_errors",
    "database_url",
    "head_revision",
    "known_revision",
    "storage_quota_message",
]
