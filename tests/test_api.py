"""The HTTP API against a live `diarist serve`: every endpoint, every error code, the official SDK."""

from __future__ import annotations

import time
import warnings

import httpx
import numpy as np
import pytest
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate

from diarist.voiceprints import encode

from .conftest import SAMPLE, reference_turns
from .live import PEER_HOST, create_key, error_fields, run_cli, submit, upload, wait_for


def diarize(api: httpx.Client, **body) -> str:
    return submit(api, "/v1/diarize", **body)


def annotation(turns) -> Annotation:
    out = Annotation()
    for start, end, speaker in turns:
        out[Segment(start, end)] = speaker
    return out


def test_key_check_and_request_ids(server, key):
    with server.client(key) as api:
        ok = api.get("/v1/test")
    assert ok.json() == {"status": "OK", "message": "Test connection successful"}
    assert ok.headers["x-request-id"]
    missing = httpx.get(f"{server.url}/v1/test")
    wrong = httpx.get(f"{server.url}/v1/test", headers={"Authorization": f"Bearer {key.key}x"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert set(response.json()) == {"requestId", "message"}
        assert response.json()["requestId"] == response.headers["x-request-id"]
    assert missing.headers["x-request-id"] != wrong.headers["x-request-id"]


@pytest.mark.slow
def test_official_sdk_upload_diarize_retrieve(server, key):
    from pyannoteai.sdk import Client

    Client.API_URL = f"{server.url}/v1"
    client = Client(key.key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns about temporary storage and polling
        media = client.upload(str(SAMPLE))
        job_id = client.diarize(media, exclusive=True, turn_level_confidence=True, model="community-1")
        job = client.retrieve(job_id, every_seconds=1)
    assert job["status"] == "succeeded"
    output = job["output"]
    assert {t["speaker"] for t in output["diarization"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert all(set(t["confidence"]) == {"SPEAKER_00", "SPEAKER_01"} for t in output["diarization"])
    hypothesis = annotation((t["start"], t["end"], t["speaker"]) for t in output["exclusiveDiarization"])
    reference = annotation(reference_turns(SAMPLE.with_suffix(".rttm")))
    assert DiarizationErrorRate()(reference, hypothesis) < 0.25
    for field in ("createdAt", "updatedAt"):
        assert job[field].endswith("Z")


def test_sdk_shaped_body_with_nulls_and_all_outputs(api, sample_media):
    job_id = diarize(
        api,
        url=sample_media,
        model=None,
        numSpeakers=2,
        minSpeakers=None,
        maxSpeakers=None,
        confidence=True,
        turnLevelConfidence=None,
        exclusive=True,
        transcription=False,
        someFutureField=True,
    )
    job = wait_for(api, job_id)
    assert job["status"] == "succeeded", job
    output = job["output"]
    assert set(output) == {"diarization", "exclusiveDiarization", "confidence", "talkTime"}
    assert output["confidence"]["resolution"] == 0.02
    assert len(output["confidence"]["score"]) == pytest.approx(30 / 0.02, abs=2)
    assert "confidence" not in output["diarization"][0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": 5}, "url"),
        ({"url": "media://x", "model": "precision-9"}, "model"),
        ({"url": "media://x", "numSpeakers": 0}, "numSpeakers"),
        ({"url": "media://x", "numSpeakers": 2.5}, "numSpeakers"),
        ({"url": "media://x", "numSpeakers": "2"}, "numSpeakers"),
        ({"url": "media://x", "maxSpeakers": True}, "maxSpeakers"),
        ({"url": "media://x", "numSpeakers": 2, "maxSpeakers": 3}, "maxSpeakers"),
        ({"url": "media://x", "minSpeakers": 3, "maxSpeakers": 2}, "minSpeakers"),
        ({"url": "media://x", "exclusive": "yes"}, "exclusive"),
        ({"url": "media://x", "transcription": True, "model": "community-1"}, "transcription"),
        ({"url": "media://x", "transcriptionConfig": {"model": "whisper-9"}}, "transcriptionConfig.model"),
        ({"url": "ftp://example.com/a.wav"}, "url"),
        ({"url": "media://a b"}, "url"),
        ({"url": "media://x", "webhook": "http://10.0.0.1/hook"}, "webhook"),
        ({"url": "media://x", "webhook": "not a url"}, "webhook"),
        ({"url": "https://example.com/" + "a" * 2100}, "url"),
        ({"url": "media://x", "webhook": "https://example.com/" + "h" * 2100}, "webhook"),
        ({"url": "media://x", "numSpeakers": 1e300}, "numSpeakers"),
        ({"url": "media://x", "maxSpeakers": 101}, "maxSpeakers"),
        ({"url": "media://x", "minSpeakers": 10**40}, "minSpeakers"),
    ],
)
def test_invalid_diarize_fields(api, body, field):
    assert field in error_fields(api.post("/v1/diarize", json=body))


@pytest.mark.parametrize("field", ["url", "webhook"])
def test_url_with_a_lone_surrogate_is_invalid(api, field):
    # JSON may escape half of a UTF-16 pair; such a string has no UTF-8 form, so no request can carry it.
    other = "url" if field == "webhook" else "webhook"
    raw = f'{{"{field}": "https://example.com/\\udc80", "{other}": "https://example.com/x"}}'.encode()
    assert "unicode string" in error_fields(api.post("/v1/diarize", content=raw))[field]


def test_malformed_and_non_object_bodies(api):
    bad_json = api.post("/v1/diarize", content=b'{"url": ', headers={"Content-Type": "application/json"})
    assert error_fields(bad_json)["body"].startswith("Malformed JSON")
    assert "body" in error_fields(api.post("/v1/diarize", json=["media://x"]))
    # curl -d without a Content-Type header still means JSON; a form body gets told to send JSON.
    no_type = api.post("/v1/diarize", content=b'{"url": "media://never-uploaded"}')
    assert no_type.status_code == 404
    form = api.post("/v1/diarize", data={"url": "media://x"})
    assert "JSON" in error_fields(form)["body"]


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "localhost", "[::1]", "[::ffff:0:169.254.169.254]"]
)
def test_internal_urls_are_refused(api, address):
    for field in ("url", "webhook"):
        body = {"url": "media://sample.wav", field: f"http://{address}/audio.wav"}
        assert "refused" in error_fields(api.post("/v1/diarize", json=body))[field].lower()


def test_unknown_jobs_and_media_are_404(server, api, key, sample_media):
    assert api.get("/v1/jobs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.post("/v1/diarize", json={"url": "media://never-uploaded"}).status_code == 404
    assert api.post("/v1/media/output", json={"url": "media://never-uploaded"}).status_code == 404
    assert api.get("/v1/no-such-route").status_code == 404
    # Another key sees neither this key's jobs nor its media.
    job_id = diarize(api, url=sample_media, model="community-1")
    other = create_key(server.data_dir, "other")
    with server.client(other) as stranger:
        assert stranger.get(f"/v1/jobs/{job_id}").status_code == 404
        assert stranger.delete(f"/v1/jobs/{job_id}").status_code == 404
        assert stranger.post("/v1/diarize", json={"url": sample_media}).status_code == 404
        assert stranger.get("/v2/jobs").json()["items"] == []
    body = api.get(f"/v1/jobs/{job_id}").json()
    assert body["jobId"] == job_id


def test_job_lists_page_newest_first(server):
    key = create_key(server.data_dir, "lister", "--rate-limit", "0")
    with server.client(key) as api:
        media = upload(api, b"not audio", "junk")
        ids = [diarize(api, url=media) for _ in range(5)]
        for job_id in ids:
            wait_for(api, job_id)
        seen, cursor = [], None
        while True:
            page = api.get("/v2/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            assert len(page["items"]) <= 2
            seen += [item["id"] for item in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]
        item = api.get("/v2/jobs").json()["items"][0]
        assert set(item) == {"id", "status", "createdAt"}
        assert api.get("/v2/jobs", params={"status": "succeeded"}).json()["items"] == []
        assert len(api.get("/v2/jobs", params={"status": "failed"}).json()["items"]) == 5
        older = api.get("/v1/jobs", params={"take": 2, "skip": 1}).json()
        assert [item["id"] for item in older["items"]] == ids[::-1][1:3]
        assert older["total"] == 5
        assert "limit" in error_fields(api.get("/v2/jobs", params={"limit": 101}))
        assert "limit" in error_fields(api.get("/v2/jobs", params={"limit": 0}))
        assert "cursor" in error_fields(api.get("/v2/jobs", params={"cursor": "nope"}))
        assert "cursor" in error_fields(api.get("/v2/jobs", params={"cursor": ids[0].replace(ids[0][:8], "0" * 8)}))
        assert "status" in error_fields(api.get("/v2/jobs", params={"status": "done"}))
        assert "skip" in error_fields(api.get("/v1/jobs", params={"skip": -1}))
        assert "skip" in error_fields(api.get("/v1/jobs", params={"skip": 2**63}))  # once a 500: integer overflow
        assert "take" in error_fields(api.get("/v1/jobs", params={"take": 10**30}))
        assert api.get("/v1/jobs", params={"skip": 2**31 - 1}).json() == {"items": [], "total": 5}


def test_media_upload_overwrite_download_and_limits(server, api):
    media = upload(api, b"first", "notes/a.bin")
    media = upload(api, b"second version", "notes/a.bin")  # same key again, as the SDK does
    link = api.post("/v1/media/output", json={"url": media})
    assert link.status_code == 201
    assert httpx.get(link.json()["url"]).content == b"second version"
    assert "url" in error_fields(api.post("/v1/media/input", json={"url": "https://example.com/a"}))
    assert "url" in error_fields(api.post("/v1/media/input", json={"url": "media://../" + "a" * 300}))
    put_url = api.post("/v1/media/input", json={"url": "media://big"}).json()["url"]
    too_big = httpx.put(put_url, content=b"\0" * (20 * 1024**2 + 1))
    assert too_big.status_code == 413
    assert "limit" in too_big.json()["message"]
    assert httpx.put(put_url[:-4] + "AAAA", content=b"x").status_code == 403
    assert api.post("/v1/media/output", json={"url": "media://big"}).status_code == 404


def test_corrupt_upload_fails_its_job_only(api, sample_media):
    junk = upload(api, b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 100, "corrupt.wav")
    empty = upload(api, b"", "empty.wav")
    bad_ids = [diarize(api, url=junk), diarize(api, url=empty)]
    good_id = diarize(api, url=sample_media, model="community-1")
    for job_id in bad_ids:
        job = wait_for(api, job_id)
        assert job["status"] == "failed"
        assert job["output"]["error"].startswith("Could not load audio")
    assert wait_for(api, good_id)["status"] == "succeeded"
    assert api.get("/v1/test").status_code == 200


def test_sdk_raises_on_failed_job(server, key, api):
    from pyannoteai.sdk import Client
    from pyannoteai.sdk.client import PyannoteAIFailedJob

    Client.API_URL = f"{server.url}/v1"
    job_id = diarize(api, url=upload(api, b"\x00" * 1000, "zeros.wav"))
    with warnings.catch_warnings(), pytest.raises(PyannoteAIFailedJob, match="Could not load audio"):
        warnings.simplefilter("ignore")
        Client(key.key).retrieve(job_id, every_seconds=1)


def test_audio_from_url_and_unreachable_url(api, peer):
    peer.files["/talk.wav"] = SAMPLE.read_bytes()
    ok = diarize(api, url=f"{peer.url}/talk.wav", model="community-1")
    missing = diarize(api, url=f"{peer.url}/missing.wav")
    assert wait_for(api, ok)["status"] == "succeeded"
    failed = wait_for(api, missing)
    assert failed["status"] == "failed"
    assert "Could not load audio" in failed["output"]["error"] and "404" in failed["output"]["error"]


def test_cancel_running_job_reports_progress_then_canceled(api, long_audio):
    media = upload(api, long_audio, "long.wav")
    job_id = diarize(api, url=media)
    running = wait_for(api, job_id, statuses=("running",))
    assert 0 <= running["progress"] <= 100
    canceled = api.delete(f"/v1/jobs/{job_id}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert canceled.json()["output"]["error"]
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 200  # canceling twice is harmless
    # The worker drops the canceled job and takes the next one.
    after = diarize(api, url=upload(api, SAMPLE, "after-cancel.wav"), model="community-1")
    assert wait_for(api, after, timeout=60)["status"] == "succeeded"
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "canceled"
    ended = api.delete(f"/v1/jobs/{after}")
    assert ended.status_code == 409


def test_rate_limit_per_key(server):
    key = create_key(server.data_dir, "limited", "--rate-limit", "3")
    with server.client(key) as api:
        answers = [api.get("/v1/test") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
    limited = answers[3]
    assert limited.headers["x-ratelimit-limit"] == "3"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert int(limited.headers["x-ratelimit-reset"]) > 0
    assert set(limited.json()) == {"requestId", "message"}


@pytest.mark.slow
def test_quota_of_audio_hours(server):
    # 43.2 s: room for one 30 s job
    key = create_key(server.data_dir, "quota", "--rate-limit", "0", "--quota-hours", "0.012")
    with server.client(key) as api:
        media = upload(api, SAMPLE, "sample.wav")
        assert wait_for(api, diarize(api, url=media, model="community-1"))["status"] == "succeeded"
        voiceprints = [{"label": "Ann", "voiceprint": encode(np.ones(192), 10.0)}]
        for path, body in (
            ("/v1/diarize", {"url": media}),
            ("/v1/voiceprint", {"url": media}),
            ("/v1/identify", {"url": media, "voiceprints": voiceprints}),
        ):
            refused = api.post(path, json=body)
            assert refused.status_code == 402, path
            assert "quota" in refused.json()["message"]
    listing = run_cli("keys", "list", data_dir=server.data_dir)
    assert "quota" in listing and key.webhook_secret not in listing and key.key not in listing


def test_revoked_key_is_refused_within_the_key_cache_seconds(server):
    key = create_key(server.data_dir, "revoked")
    with server.client(key) as api:
        assert api.get("/v1/test").status_code == 200
        run_cli("keys", "revoke", key.id, data_dir=server.data_dir)
        revoked = time.monotonic()
        # The server holds a key it read for key_cache_seconds (1 s); a loaded machine may answer late.
        while (answer := api.get("/v1/test")).status_code == 200 and time.monotonic() - revoked < 3.0:
            time.sleep(0.05)
        assert answer.status_code == 401 and answer.json()["message"] == "Invalid API key."


def test_openapi_and_docs(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v1/test", "/v1/diarize", "/v1/jobs/{jobId}", "/v2/jobs", "/v1/jobs", "/v1/media/input"):
        assert path in spec["paths"]
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200
    # Its Authorize and Try-it-out buttons must not be clickjacked from a page of another origin.
    assert docs.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert httpx.get(f"{server.url}/redoc").status_code == 404  # not served: nothing else to guard


def test_peer_host_is_allowed_only_by_setting(api, peer):
    assert PEER_HOST in peer.url
    assert api.post("/v1/diarize", json={"url": f"{peer.url}/x.wav", "webhook": f"{peer.url}/h"}).status_code == 200


@pytest.mark.slow
def test_official_sdk_transcription_with_fallback_warning(server, key):
    from pyannoteai.sdk import Client

    Client.API_URL = f"{server.url}/v1"
    client = Client(key.key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        media = client.upload(str(SAMPLE))
        job_id = client.diarize(media, transcription=True, transcription_config={"model": "parakeet-tdt-0.6b-v3"})
        output = client.retrieve(job_id, every_seconds=1)["output"]
    words, turns = output["wordLevelTranscription"], output["turnLevelTranscription"]
    assert {w["speaker"] for w in words} == {t["speaker"] for t in output["diarization"]}
    assert "Chicago" in " ".join(t["text"] for t in turns)
    assert "whisper-base" in output["warning"] and "parakeet-tdt-0.6b-v3 is not installed" in output["warning"]
    assert str(server.data_dir) not in output["warning"]  # no server path reaches the user
