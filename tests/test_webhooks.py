"""Webhooks sent by the live server to a real HTTP receiver, with signatures checked as a user would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from diarist.jobs.store import Store

from .live import create_key, upload, wait_for


def verify(secret: str, received) -> bool:
    """What the pyannoteAI docs tell receivers to do: base64 HMAC-SHA256 of v0:{timestamp}:{body}."""
    timestamp = received.headers["X-Request-Timestamp"]
    signed = f"v0:{timestamp}:{received.body.decode()}".encode()
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, received.headers["X-Signature"])


def test_succeeded_job_webhook_is_signed_with_the_key_secret(api, key, peer, sample_media):
    job_id = api.post(
        "/v1/diarize",
        json={"url": sample_media, "model": "community-1", "webhook": f"{peer.url}/hook", "exclusive": True},
    ).json()["jobId"]
    (hook,) = peer.wait(1)
    assert hook.path == "/hook"
    assert verify(key.webhook_secret, hook)
    assert not verify(key.webhook_secret + "x", hook)
    assert abs(int(hook.headers["X-Request-Timestamp"]) - time.time()) < 60
    assert hook.headers["Content-Type"] == "application/json"
    assert "x-retry-num" not in {h.lower() for h in hook.headers}
    payload = hook.json()
    assert payload["jobId"] == job_id and payload["status"] == "succeeded"
    assert payload["output"] == api.get(f"/v1/jobs/{job_id}").json()["output"]
    assert payload["output"]["exclusiveDiarization"]


def test_status_only_and_failed_webhooks_carry_no_output(api, peer, sample_media):
    hook = f"{peer.url}/hook"
    status_only = api.post("/v1/diarize", json={"url": sample_media, "webhook": hook, "webhookStatusOnly": True})
    broken = api.post("/v1/diarize", json={"url": upload(api, b"junk", "junk.wav"), "webhook": hook})
    received = {r.json()["jobId"]: r.json() for r in peer.wait(2, timeout=60)}
    assert received[status_only.json()["jobId"]] == {"jobId": status_only.json()["jobId"], "status": "succeeded"}
    assert received[broken.json()["jobId"]] == {"jobId": broken.json()["jobId"], "status": "failed"}


def test_failed_deliveries_are_retried_with_reason(api, key, peer, sample_media):
    peer.answers = [500, 503]
    api.post("/v1/diarize", json={"url": sample_media, "model": "community-1", "webhook": f"{peer.url}/hook"})
    first, second, third = peer.wait(3, timeout=60)
    assert first.body == second.body == third.body
    assert second.headers["x-retry-num"] == "1" and second.headers["x-retry-reason"] == "http_error"
    assert third.headers["x-retry-num"] == "2"
    assert all(verify(key.webhook_secret, r) for r in (first, second, third))
    time.sleep(2)
    assert len(peer.received) == 3  # the third attempt succeeded: no more


def test_unreachable_webhook_never_affects_the_job(server, peer):
    key = create_key(server.data_dir, "gone-receiver", "--rate-limit", "0")
    with server.client(key) as api:
        media = upload(api, b"RIFF", "tiny.wav")
        peer.close()  # nothing listens any more
        job_id = api.post("/v1/diarize", json={"url": media, "webhook": f"{peer.url}/hook"}).json()["jobId"]
        assert wait_for(api, job_id)["status"] == "failed"  # its own fault (junk audio), not the webhook's
        assert api.get(f"/v1/jobs/{job_id}").json()["output"]["error"].startswith("Could not load audio")
    store = Store(f"sqlite:///{server.data_dir / 'diarist.db'}")
    deadline = time.monotonic() + 30
    while (delivery := store.deliveries(job_id)[0]).due_at is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert delivery.attempts == 4  # the first try and three retries
    assert delivery.last_reason == "connection_failed" and not delivery.delivered


def test_canceled_job_sends_canceled_webhook(api, peer, long_audio):
    media = upload(api, long_audio, "long.wav")
    job_id = api.post("/v1/diarize", json={"url": media, "webhook": f"{peer.url}/hook"}).json()["jobId"]
    wait_for(api, job_id, statuses=("running",))
    api.delete(f"/v1/jobs/{job_id}")
    (hook,) = peer.wait(1)
    assert hook.json() == {"jobId": job_id, "status": "canceled"}
