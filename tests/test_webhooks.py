"""Webhooks sent by the live server to a real HTTP receiver, with signatures checked as a user would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import Counter

import pytest

from diarist.jobs.store import Store
from diarist.jobs.tables import WebhookDelivery

from .live import LiveServer, create_key, upload, wait_for


def verify(secret: str, received) -> bool:
    """What the pyannoteAI docs tell receivers to do: base64 HMAC-SHA256 of v0:{timestamp}:{body}."""
    timestamp = received.headers["X-Request-Timestamp"]
    signed = f"v0:{timestamp}:{received.body.decode()}".encode()
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, received.headers["X-Signature"])


def webhooks(peer) -> list:
    """The POSTs a peer received (it records the GETs of audio URLs too)."""
    return [r for r in peer.received if r.method == "POST"]


def lowered(headers: dict[str, str]) -> set[str]:
    return {name.lower() for name in headers}


def junk_job_delivery(server, api, webhook: str) -> tuple[str, WebhookDelivery]:
    """Submit a job that fails at once (not audio) with this webhook; its delivery once no attempt is left."""
    job_id = api.post("/v1/diarize", json={"url": upload(api, b"junk", "junk.wav"), "webhook": webhook}).json()["jobId"]
    wait_for(api, job_id)
    store = Store(server.database)
    deadline = time.monotonic() + 30
    while (delivery := store.deliveries(job_id)[0]).due_at is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    store.close()
    return job_id, delivery


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_unreachable_webhook_never_affects_the_job(server, peer):
    key = create_key(server.data_dir, "gone-receiver", "--rate-limit", "0")
    peer.close()  # nothing listens any more
    with server.client(key) as api:
        job_id, delivery = junk_job_delivery(server, api, f"{peer.url}/hook")
        job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"  # its own fault (junk audio), not the webhook's
    assert job["output"]["error"].startswith("Could not load audio")
    assert delivery.attempts == 4  # the first try and three retries
    assert delivery.last_reason == "connection_failed" and not delivery.delivered


def test_canceled_job_sends_canceled_webhook(api, peer, long_audio):
    media = upload(api, long_audio, "long.wav")
    job_id = api.post("/v1/diarize", json={"url": media, "webhook": f"{peer.url}/hook"}).json()["jobId"]
    wait_for(api, job_id, statuses=("running",))
    api.delete(f"/v1/jobs/{job_id}")
    (hook,) = peer.wait(1)
    assert hook.json() == {"jobId": job_id, "status": "canceled"}


@pytest.mark.slow
def test_redirect_that_turns_into_get_is_a_failed_delivery(server, api, peer):
    peer.redirects["/hook"] = (302, "/landing")
    peer.files["/landing"] = b"welcome"  # a GET there would succeed: it must never be made
    _, delivery = junk_job_delivery(server, api, f"{peer.url}/hook")
    assert not delivery.delivered
    assert (delivery.attempts, delivery.last_status, delivery.last_reason) == (4, 302, "http_error")
    assert [(r.method, r.path) for r in peer.received] == [("POST", "/hook")] * 4
    assert peer.received[1].headers["x-retry-reason"] == "http_error"


def test_redirect_that_keeps_the_post_delivers_the_same_signed_body(server, api, key, peer):
    peer.redirects["/hook"] = (307, "/moved")
    peer.redirects["/moved"] = (308, f"{peer.url}/final")
    job_id, delivery = junk_job_delivery(server, api, f"{peer.url}/hook")
    assert delivery.delivered and delivery.attempts == 1 and delivery.last_status == 200
    first, moved, final = peer.received
    assert [(r.method, r.path) for r in peer.received] == [("POST", "/hook"), ("POST", "/moved"), ("POST", "/final")]
    assert first.body == moved.body == final.body
    assert final.json() == {"jobId": job_id, "status": "failed"}
    assert final.headers["X-Signature"] == first.headers["X-Signature"] and verify(key.webhook_secret, final)


@pytest.mark.slow
def test_more_than_two_redirects_is_too_many(server, api, peer):
    for hop in range(3):
        peer.redirects[f"/hop{hop}"] = (307, f"/hop{hop + 1}")
    _, delivery = junk_job_delivery(server, api, f"{peer.url}/hop0")
    assert not delivery.delivered
    assert (delivery.attempts, delivery.last_status, delivery.last_reason) == (4, 307, "too_many_redirects")
    assert "/hop3" not in {r.path for r in peer.received}


@pytest.mark.slow
def test_failed_webhook_log_line_hides_the_urls_credentials(server, api, peer):
    port = peer.url.rsplit(":", 1)[1]
    peer.close()  # nothing listens: every attempt fails and is logged
    _, delivery = junk_job_delivery(server, api, f"http://user:TopSecretPw@127.0.0.2:{port}/r")
    assert not delivery.delivered
    log = server.log()
    assert f"to http://***@127.0.0.2:{port}/r failed: connection_failed" in log
    assert "TopSecretPw" not in log


@pytest.mark.slow
def test_deliveries_queued_behind_a_slow_receiver_are_sent_once(tmp_path, peer):
    """More due deliveries than threads, each answered slowly: none may wait out its lease and be sent again."""
    # One thread and a 1 s timeout: a claim is leased for 1 * 3 + 5 = 8 s, which the 14th delivery
    # waiting behind 0.6 s answers would outlive if all of them were claimed at once.
    env = {"DIARIST_WEBHOOK_TIMEOUT": "1", "DIARIST_WEBHOOK_THREADS": "1"}
    live = LiveServer(tmp_path / "slow-receiver", env=env).start()
    try:
        key = create_key(live.data_dir, "slow-receiver", "--rate-limit", "0")
        peer.post_delay = 0.6
        with live.client(key) as api:
            # A URL that answers 404: each job fails at once, without a model.
            job = {"url": f"{peer.url}/missing.wav", "webhook": f"{peer.url}/hook"}
            job_ids = [api.post("/v1/diarize", json=job).json()["jobId"] for _ in range(20)]
            for job_id in job_ids:
                wait_for(api, job_id)
        deadline = time.monotonic() + 60
        while len({h.json()["jobId"] for h in webhooks(peer)}) < len(job_ids) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        live.stop()  # waits for the deliveries already handed to the thread pool
    first_attempts = Counter(h.json()["jobId"] for h in webhooks(peer) if "x-retry-num" not in lowered(h.headers))
    assert first_attempts == Counter(job_ids)
