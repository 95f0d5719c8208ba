"""Voiceprints and identification through a live `diarist serve`: the official SDK, webhooks, job
lists, and every bad input of /v1/voiceprint and /v1/identify.

Speakers are enrolled from one AMI recording and identified in another recording of the same
meeting series (ES2003b -> ES2003a): a real cross-session identification. (Not the other way: the
diarization of ES2003b merges its two speakers, and no matching can undo that.)
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from diarist.voiceprints import decode, encode

from .conftest import DEV, reference_turns, solo_speech, wav_bytes
from .live import error_fields, submit, upload, wait_for

ENROLLED_IN, IDENTIFIED_IN = "ami-ES2003b-0-30", "ami-ES2003a-0-30"
NAMES = {"MEE009": "Ann", "MEE012": "Bob"}  # reference speaker -> the label they are enrolled under


def reference_speaker_of(recording: str, turns: list[dict], speaker: str) -> str:
    """The reference speaker who talks most during `speaker`'s turns of an output."""
    overlap: dict[str, float] = {}
    for start, end, who in reference_turns(DEV / f"{recording}.rttm"):
        for turn in turns:
            if turn["speaker"] == speaker:
                overlap[who] = overlap.get(who, 0.0) + max(0.0, min(end, turn["end"]) - max(start, turn["start"]))
    return max(overlap, key=lambda who: overlap[who])


@pytest.fixture(scope="session")
def enrolled(server, key) -> dict[str, str]:
    """label -> voiceprint of each speaker of NAMES, made by voiceprint jobs from their ES2003b speech."""
    voiceprints = {}
    with server.client(key) as api:
        for speaker, label in NAMES.items():
            media = upload(api, wav_bytes(solo_speech(ENROLLED_IN, speaker)), f"enroll-{speaker}.wav")
            job = wait_for(api, submit(api, "/v1/voiceprint", url=media))
            assert job["status"] == "succeeded", job
            assert "voices" not in job["output"].get("warning", "")  # one voice (Bob's 5 s may warn it is short)
            voiceprints[label] = job["output"]["voiceprint"]
    return voiceprints


@pytest.fixture(scope="session")
def meeting_media(server, key) -> str:
    with server.client(key) as api:
        return upload(api, DEV / f"{IDENTIFIED_IN}.wav", "es2003a.wav")


@pytest.mark.slow
def test_official_sdk_voiceprint_then_identify(server, key, tmp_path):
    from pyannoteai.sdk import Client

    Client.API_URL = f"{server.url}/v1"
    client = Client(key.key)
    clips = {}
    for speaker, label in NAMES.items():
        clips[label] = tmp_path / f"{label}.wav"
        clips[label].write_bytes(wav_bytes(solo_speech(ENROLLED_IN, speaker)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns about temporary storage and polling
        voiceprints = {}
        for label, clip in clips.items():
            job = client.retrieve(client.voiceprint(client.upload(str(clip))), every_seconds=1)
            voiceprints[label] = job["output"]["voiceprint"]
        meeting = client.upload(str(DEV / f"{IDENTIFIED_IN}.wav"))
        job = client.retrieve(client.identify(meeting, voiceprints), every_seconds=1)
    assert job["status"] == "succeeded"
    output = job["output"]
    matches = {v["speaker"]: v["match"] for v in output["voiceprints"]}
    for speaker, label in NAMES.items():
        found = [s for s, match in matches.items() if match == label]
        assert len(found) == 1, matches  # exclusive matching, the SDK's default
        assert reference_speaker_of(IDENTIFIED_IN, output["diarization"], found[0]) == speaker
    for entry in output["voiceprints"]:
        assert set(entry["confidence"]) == set(NAMES.values())
        assert all(0 <= score <= 100 for score in entry["confidence"].values())
    assert len(output["identification"]) == len(output["diarization"])
    for segment, turn in zip(output["identification"], output["diarization"], strict=True):
        assert segment["diarizationSpeaker"] == turn["speaker"]
        assert segment["match"] == matches[turn["speaker"]]
        assert segment["speaker"] == (segment["match"] or turn["speaker"])
        assert (segment["start"], segment["end"]) == (turn["start"], turn["end"])
    # The web page's view: speakers go by their matched labels until renamed, in every speaker field.
    with server.client(key) as api:
        job_id = job["jobId"]
        matched = {speaker: label for speaker, label in matches.items() if label}
        assert api.get(f"/v1/jobs/{job_id}/speakers").json() == matched
        (ann,) = (s for s, label in matched.items() if label == "Ann")
        assert api.put(f"/v1/jobs/{job_id}/speakers", json={ann: "Ann Smith"}).json() == matched | {ann: "Ann Smith"}
        names = matched | {ann: "Ann Smith"}
        named = api.get(f"/v1/jobs/{job_id}", params={"names": "true", "details": "true"}).json()
        assert named["kind"] == "identify"
        for part, key in (("diarization", "speaker"), ("identification", "diarizationSpeaker")):
            expected = [names.get(t[key], t[key]) for t in output[part]]
            assert [t["speaker"] for t in named["output"][part]] == expected
        assert api.get(f"/v1/jobs/{job_id}").json()["output"] == output  # the plain output keeps the ids


@pytest.mark.slow
def test_identify_with_options_webhook_and_lists(api, enrolled, meeting_media, peer):
    """`matching` reaches the job; the diarize options and the webhook work as for diarize.

    A random voice scores about 1 against anyone: with threshold 50 nobody is named after it,
    with the reference's threshold 0 exclusive matching still gives it to one speaker. The same
    voice under two labels ties everywhere: without exclusive matching each speaker takes the first.
    """
    nobody = encode(np.random.default_rng(0).standard_normal(192), 10.0)
    job_id = submit(
        api,
        "/v1/identify",
        url=meeting_media,
        voiceprints=[{"label": "Nobody", "voiceprint": nobody}],
        matching={"threshold": 50},
        exclusive=True,
        turnLevelConfidence=True,
        webhook=f"{peer.url}/identified",
    )
    (hook,) = peer.wait(1)
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert hook.json() == {"jobId": job_id, "status": "succeeded", "output": job["output"]}
    output = job["output"]
    assert output["exclusiveDiarization"] and all("confidence" in t for t in output["diarization"])
    assert all(v["match"] is None and v["confidence"]["Nobody"] < 10 for v in output["voiceprints"])
    assert all(s["match"] is None and s["speaker"] == s["diarizationSpeaker"] for s in output["identification"])
    listed = {item["id"] for item in api.get("/v2/jobs", params={"limit": 100}).json()["items"]}
    assert job_id in listed

    anyone = wait_for(
        api, submit(api, "/v1/identify", url=meeting_media, voiceprints=[{"label": "Nobody", "voiceprint": nobody}])
    )
    assert [v["match"] for v in anyone["output"]["voiceprints"]].count("Nobody") == 1

    twice = [{"label": "Ann", "voiceprint": enrolled["Ann"]}, {"label": "Also Ann", "voiceprint": enrolled["Ann"]}]
    shared = wait_for(
        api, submit(api, "/v1/identify", url=meeting_media, voiceprints=twice, matching={"exclusive": False})
    )
    matches = [v["match"] for v in shared["output"]["voiceprints"]]
    assert matches.count("Ann") == len(matches) >= 2  # threshold 0: every speaker is matched, both to Ann


def test_voiceprint_webhook_and_warning_for_two_voices(api, peer):
    media = upload(api, DEV / f"{ENROLLED_IN}.wav", "two-voices.wav")  # MEE009 and MEE012 both talk
    job_id = submit(api, "/v1/voiceprint", url=media, webhook=f"{peer.url}/voiceprint")
    (hook,) = peer.wait(1)
    assert hook.json()["jobId"] == job_id and hook.json()["status"] == "succeeded"
    output = hook.json()["output"]
    assert "voices were heard" in output["warning"]
    decode(output["voiceprint"])  # a voiceprint all the same: of the one who talks most
    assert len(output["voiceprint"]) < 2000
    # It has no speaker turns: no speakers to name, nothing to export but its JSON.
    renamed = api.put(f"/v1/jobs/{job_id}/speakers", json={"SPEAKER_00": "Ann"})
    assert renamed.status_code == 409 and "voiceprint job" in renamed.json()["message"]
    as_srt = api.get(f"/v1/jobs/{job_id}/export", params={"format": "srt"})
    assert as_srt.status_code == 409 and "only json" in as_srt.json()["message"]
    assert api.get(f"/v1/jobs/{job_id}/export", params={"format": "json"}).json() == output


def test_voiceprint_input_limits_and_unusable_audio(api, peer):
    forty_seconds = wav_bytes(np.zeros(16000 * 40, dtype=np.float32))
    long = upload(api, forty_seconds, "forty-seconds.wav")
    assert "at most 30 s" in error_fields(api.post("/v1/voiceprint", json={"url": long}))["url"]
    peer.files["/long.wav"] = forty_seconds  # a URL's length is known once the worker has it
    job = wait_for(api, submit(api, "/v1/voiceprint", url=f"{peer.url}/long.wav"))
    assert job["status"] == "failed" and job["output"]["error"].endswith("lasts 40.0 s, over the 30 s limit.")
    silence = upload(api, wav_bytes(np.zeros(16000 * 5, dtype=np.float32)), "silence.wav")
    job = wait_for(api, submit(api, "/v1/voiceprint", url=silence))
    assert job["status"] == "failed" and "too little speech" in job["output"]["error"]
    text = upload(api, b"these bytes are not audio" * 100, "notes.wav")
    job = wait_for(api, submit(api, "/v1/voiceprint", url=text))
    assert job["status"] == "failed" and job["output"]["error"].startswith(
        "Could not load audio from media://notes.wav"
    )
    missing = api.post("/v1/voiceprint", json={"url": "media://never-uploaded.wav"})
    assert missing.status_code == 404


def _foreign(voiceprint: str) -> str:
    """The same voice, as another voice model would label it."""
    voice = decode(voiceprint)
    return encode(voice.vector, voice.seconds, model="campplus-92f29b94/window-centroid-0")


@pytest.mark.parametrize(
    ("voiceprints", "field", "words"),
    [
        (lambda vp: [{"label": "Ann", "voiceprint": "not a voiceprint!"}], "voiceprints[0].voiceprint", "not base64"),
        (lambda vp: [{"label": "Ann", "voiceprint": vp[:-7]}], "voiceprints[0].voiceprint", "truncated"),
        (lambda vp: [{"label": "Ann", "voiceprint": _foreign(vp)}], "voiceprints[0].voiceprint", "another voice model"),
        (lambda vp: [{"label": f"P{i}", "voiceprint": vp} for i in range(51)], "voiceprints", "at most 50"),
        (lambda vp: [{"label": "Ann", "voiceprint": vp}] * 2, "voiceprints[1].label", "given twice"),
        (lambda vp: [], "voiceprints", "at least 1"),
        (lambda vp: [{"label": "speaker_00", "voiceprint": vp}], "voiceprints[0].label", "SPEAKER_"),
        (lambda vp: [{"label": "", "voiceprint": vp}], "voiceprints[0].label", "at least 1"),
        (lambda vp: [{"label": "Ann"}], "voiceprints[0].voiceprint", "Required"),
        (lambda vp: [{"label": "Ann\nLee", "voiceprint": vp}], "voiceprints[0].label", "line breaks"),
        (lambda vp: [{"label": "A\u0000", "voiceprint": vp}], "voiceprints[0].label", "control characters"),
        (lambda vp: [{"label": "   ", "voiceprint": vp}], "voiceprints[0].label", "blank"),
        (lambda vp: [{"label": "Ann", "voiceprint": vp}, vp], "voiceprints[1]", "Must be a JSON object"),
    ],
)
def test_bad_voiceprints_are_refused(api, enrolled, meeting_media, voiceprints, field, words):
    body = {"url": meeting_media, "voiceprints": voiceprints(enrolled["Ann"])}
    errors = error_fields(api.post("/v1/identify", json=body))
    assert words in errors[field], errors


def test_a_voiceprint_of_another_size_is_refused_at_submit(api):
    """Its vector could not be compared with the speakers' 192 values: a 400 on its field, not a failed job."""
    body = {"url": "media://meeting.wav", "voiceprints": [{"label": "Ann", "voiceprint": encode(np.ones(100), 10.0)}]}
    errors = error_fields(api.post("/v1/identify", json=body))
    assert "holds 100 values" in errors["voiceprints[0].voiceprint"], errors


def test_bad_identify_options_are_refused(api, enrolled, meeting_media):
    good = [{"label": "Ann", "voiceprint": enrolled["Ann"]}]
    cases = [
        ({"matching": {"threshold": 101}}, "matching.threshold"),
        ({"matching": {"exclusive": "yes"}}, "matching.exclusive"),
        ({"matching": {"threshold": True}}, "matching.threshold"),
        ({"matching": {"threshold": "50"}}, "matching.threshold"),
        ({"matching": "yes"}, "matching"),
        ({"transcription": True}, "transcription"),
        ({"numSpeakers": 2, "maxSpeakers": 3}, "maxSpeakers"),
        ({"url": "http://10.0.0.1/a.wav"}, "url"),
    ]
    for extra, field in cases:
        assert field in error_fields(
            api.post("/v1/identify", json={"url": meeting_media, "voiceprints": good, **extra})
        )
    assert "voiceprints" in error_fields(api.post("/v1/identify", json={"url": meeting_media}))
    assert "url" in error_fields(api.post("/v1/voiceprint", json={}))
