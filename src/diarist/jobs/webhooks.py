"""Webhooks: the signature of a job's webhook body (jobs/payloads.py), and delivery with retries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from diarist.jobs.background import Periodic
from diarist.jobs.store import Store
from diarist.jobs.tables import WebhookDelivery, utcnow
from diarist.net import NetPolicy, post, redact_url

log = logging.getLogger("diarist.webhooks")
POLL_SECONDS = 0.5


def sign(secret: str, timestamp: int, body: str) -> str:
    """Base64 HMAC-SHA256 of `v0:{timestamp}:{body}` keyed with the UTF-8 secret."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_headers(secret: str, body: str, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        "X-Request-Timestamp": str(timestamp),
        "X-Signature": sign(secret, timestamp, body),
    }


class WebhookDispatcher:
    """Sends due webhook deliveries from the store, in a background thread, retrying on failure.

    Attempts: the first delivery, then one retry after each delay in `retry_delays` (immediate,
    1 min, 5 min by default). Retries carry `x-retry-num` and the previous `x-retry-reason`.
    """

    def __init__(self, store: Store, policy: NetPolicy, timeout: float, retry_delays: list[float], threads: int = 8):
        self.store, self.policy, self.timeout, self.retry_delays = store, policy, timeout, retry_delays
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhook")
        self._in_flight = 0  # deliveries claimed and not yet recorded; at most `threads`
        self._in_flight_lock = threading.Lock()
        self._loop = Periodic("webhook-dispatcher", POLL_SECONDS, self._send_due)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        self._pool.shutdown(wait=True)

    def report(self) -> dict[str, Any]:
        """The dispatcher loop's health, for `/health`."""
        return self._loop.report()

    def _send_due(self) -> None:
        # Claim only what a free thread starts at once: a delivery waiting in the pool's queue would
        # outlive its lease (sized for one attempt) and be claimed and sent a second time.
        with self._in_flight_lock:
            free = self.threads - self._in_flight
        if free <= 0:
            return
        lease = timedelta(seconds=self.timeout * 3 + 5)  # one attempt: up to 3 requests with redirects
        for delivery in self.store.claim_webhooks(limit=free, lease=lease):
            with self._in_flight_lock:
                self._in_flight += 1
            self._pool.submit(self._deliver_claimed, delivery)

    def _deliver_claimed(self, delivery: WebhookDelivery) -> None:
        try:
            self.deliver(delivery)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def deliver(self, delivery: WebhookDelivery) -> None:
        """Make one attempt and record its outcome (and when to try again)."""
        key = self.store.get_key(delivery.key_id)
        if key is None:
            self.store.record_delivery(delivery.id, False, None, "unknown_error", None)
            return
        headers = signed_headers(key.webhook_secret, delivery.body)
        if delivery.attempts > 0:
            headers["x-retry-num"] = str(delivery.attempts)
            headers["x-retry-reason"] = delivery.last_reason or "unknown_error"
        result = post(delivery.url, delivery.body.encode(), headers, self.policy, timeout=self.timeout)
        retry_at = None
        if not result.ok and delivery.attempts < len(self.retry_delays):
            retry_at = utcnow() + timedelta(seconds=self.retry_delays[delivery.attempts])
        if not result.ok:
            log.warning("webhook for job %s to %s failed: %s", delivery.job_id, redact_url(delivery.url), result.reason)
        self.store.record_delivery(delivery.id, result.ok, result.status, result.reason, retry_at)
