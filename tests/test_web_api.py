"""The API the web page uses (diarist extensions), against a live `diarist serve`: waveform peaks,
job details, speaker names, exports, ranged audio downloads and the page's vocabulary."""

from __future__ import annotations

import itertools
import math
import re

import httpx
import pytest

from diarist.api.routes.web import WEB_DIR
from diarist.audio import PEAKS_BUCKET, PEAKS_MAX_VALUES, SAMPLE_RATE, PeaksMeter, stream_audio
from diarist.exports import FORMATS, media_stem
from diarist.jobs.tables import STATUSES, TERMINAL
from diarist.vocabulary import DEFAULT_MODEL, DIARIZATION_MODELS

from .conftest import SAMPLE
from .live import upload, wait_for


def metered(blocks) -> PeaksMeter:
    meter = PeaksMeter()
    for _block in meter.metered(blocks):
        pass
    return meter


def test_peaks_meter_takes_bucket_maxima_across_blocks(sample_audio):
    """Blocks cut anywhere give the same peaks as the whole: the pipeline's block sizes do not matter."""
    whole = metered([sample_audio]).peaks()
    cuts = [0, 7, 1000, 1001, 48_000, 200_003, len(sample_audio)]
    pieces = metered(sample_audio[a:b] for a, b in itertools.pairwise(cuts)).peaks()
    assert pieces == whole
    assert whole.rate == 50 and whole.duration == len(sample_audio) / SAMPLE_RATE
    assert len(whole.values) == math.ceil(len(sample_audio) / PEAKS_BUCKET)
    expected = [round(min(1.0, abs(sample_audio[i : i + PEAKS_BUCKET]).max()) * 127) for i in (0, 320 * 700)]
    assert [whole.values[0], whole.values[700]] == expected


def test_peaks_of_a_long_file_stay_under_the_limit(sample_audio):
    """3 hours of audio: whole fine buckets per value, at most PEAKS_MAX_VALUES, each the max of its span."""
    hours = 3 * 3600 * SAMPLE_RATE
    blocks = (sample_audio for _ in range(hours // len(sample_audio)))
    peaks = metered(blocks).peaks()
    fine = metered([sample_audio]).peaks()
    factor = 50 / peaks.rate
    assert factor == 6 and len(peaks.values) <= PEAKS_MAX_VALUES
    assert peaks.duration == 3 * 3600
    # The first value spans the first 6 fine buckets of the (repeating) sample.
    assert peaks.values[0] == max(fine.values[:6])


@pytest.fixture(scope="module")
def finished(server, key, sample_media) -> str:
    """A succeeded diarize job of the sample with every output part the names apply to."""
    with server.client(key) as api:
        body = {"url": sample_media, "model": "community-1", "exclusive": True, "turnLevelConfidence": True}
        job_id = api.post("/v1/diarize", json=body).json()["jobId"]
        assert wait_for(api, job_id)["status"] == "succeeded"
    return job_id


@pytest.fixture(scope="module")
def failed(server, key) -> str:
    with server.client(key) as api:
        job_id = api.post("/v1/diarize", json={"url": upload(api, b"not audio", "junk-web.wav")}).json()["jobId"]
        assert wait_for(api, job_id)["status"] == "failed"
    return job_id


def test_peaks_come_from_the_workers_decode(api, finished, failed):
    answer = api.get(f"/v1/jobs/{finished}/peaks", headers={"Accept-Encoding": "identity"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    expected = metered(stream_audio(SAMPLE)).peaks()
    assert body == expected.to_dict() and body["rate"] == 50 and len(body["peaks"]) == 1500
    assert max(body["peaks"]) > 30 and min(body["peaks"]) >= 0  # speech, not silence
    zipped = httpx.get(answer.url, headers={**api.headers, "Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.json() == body
    assert len(zipped.content) == len(answer.content)  # httpx decompressed it; the wire held less
    assert int(zipped.headers["content-length"]) < len(answer.content) / 2
    for job_id in (failed, "00000000-0000-0000-0000-000000000000"):
        missing = api.get(f"/v1/jobs/{job_id}/peaks")
        assert missing.status_code == 404 and set(missing.json()) == {"requestId", "message"}


def test_details_add_kind_redacted_url_model_and_options(api, finished, sample_media):
    plain = api.get(f"/v1/jobs/{finished}").json()
    assert "kind" not in plain and "url" not in plain
    detailed = api.get(f"/v1/jobs/{finished}", params={"details": "true"}).json()
    # The options the job set to other than their defaults, and only those (the page lists them).
    options = {"exclusive": True, "turnLevelConfidence": True}
    expected = {"kind": "diarize", "url": sample_media, "model": "community-1", "options": options, "attempt": 1}
    assert detailed == plain | expected


def test_speaker_names_are_kept_applied_and_checked(api, finished, failed):
    path = f"/v1/jobs/{finished}/speakers"
    assert api.get(path).json() == {}
    named = api.put(path, json={"SPEAKER_00": "  Alice ", "SPEAKER_01": "Bob"})
    assert named.status_code == 200 and named.json() == {"SPEAKER_00": "Alice", "SPEAKER_01": "Bob"}
    assert api.put(path, json={"SPEAKER_01": None}).json() == {"SPEAKER_00": "Alice"}
    assert api.put(path, json={"SPEAKER_01": "Bea"}).json() == {"SPEAKER_00": "Alice", "SPEAKER_01": "Bea"}
    assert api.put(path, json={"SPEAKER_01": ""}).json() == {"SPEAKER_00": "Alice"}
    assert api.get(path).json() == {"SPEAKER_00": "Alice"}

    refused = api.put(path, json={"SPEAKER_07": "Zed", "SPEAKER_00": "x" * 101})
    assert refused.status_code == 400
    assert {e["field"] for e in refused.json()["errors"]} == {"SPEAKER_00"}  # the length check comes first
    for bad in ("Ann\nLee", "Ann\tLee", "Ann\u2028Lee", "Ann\u2029Lee"):  # would split an RTTM line or a cue
        refused = api.put(path, json={"SPEAKER_01": bad})
        assert "control characters" in refused.json()["errors"][0]["message"], refused.text
    unknown = api.put(path, json={"SPEAKER_07": "Zed"})
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "SPEAKER_07"
    # JSON may escape half of a UTF-16 pair, which has no UTF-8 form: the 400 names it as U+FFFD.
    lone = api.put(path, content=b'{"\\ud800": "x"}')
    assert lone.status_code == 400 and lone.json()["errors"][0]["field"] == "\ufffd", lone.text
    assert api.put(path, json=["SPEAKER_00"]).status_code == 400
    assert api.get(path).json() == {"SPEAKER_00": "Alice"}  # nothing of a refused request is kept
    assert api.put(f"/v1/jobs/{failed}/speakers", json={"SPEAKER_00": "A"}).status_code == 409
    assert api.get(f"/v1/jobs/{failed}/speakers").json() == {}

    plain = api.get(f"/v1/jobs/{finished}").json()["output"]
    assert {t["speaker"] for t in plain["diarization"]} == {"SPEAKER_00", "SPEAKER_01"}
    output = api.get(f"/v1/jobs/{finished}", params={"names": "true"}).json()["output"]
    for part in ("diarization", "exclusiveDiarization"):
        assert {t["speaker"] for t in output[part]} == {"Alice", "SPEAKER_01"}
        assert all(set(t["confidence"]) == {"Alice", "SPEAKER_01"} for t in output[part])
        assert [(t["start"], t["end"]) for t in output[part]] == [(t["start"], t["end"]) for t in plain[part]]


def test_exports_carry_the_names(api, finished, failed):
    api.put(f"/v1/jobs/{finished}/speakers", json={"SPEAKER_00": "Alice", "SPEAKER_01": "Bob"})
    named = api.get(f"/v1/jobs/{finished}", params={"names": "true"}).json()["output"]
    files = {}
    for fmt in ("json", "rttm", "srt", "vtt", "txt"):
        answer = api.get(f"/v1/jobs/{finished}/export", params={"format": fmt})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-disposition"] == f'attachment; filename="sample.{fmt}"'
        files[fmt] = answer
    assert files["json"].json() == named
    rttm = [line.split() for line in files["rttm"].text.splitlines()]
    assert len(rttm) == len(named["diarization"]) and {line[7] for line in rttm} == {"Alice", "Bob"}
    assert all(line[1] == "sample" for line in rttm)  # the file's stem, as the command line writes
    # No transcript: one cue per exclusive turn, its text the speaker's name.
    turns = named["exclusiveDiarization"]
    srt = files["srt"].text.strip().split("\n\n")
    assert len(srt) == len(turns) and srt[0].split("\n")[2] == f"[{turns[0]['speaker']}]"
    assert files["srt"].headers["content-type"].startswith("application/x-subrip")
    assert files["vtt"].text.startswith("WEBVTT\n\n") and files["vtt"].headers["content-type"].startswith("text/vtt")
    assert set(re.findall(r"<v ([^>]+)>", files["vtt"].text)) == {"Alice", "Bob"}
    text, talk = files["txt"].text.split("\nTalk time:\n")
    assert len(text.splitlines()) == len(turns)
    assert [line.split()[0] for line in talk.splitlines()] == [t["speaker"] for t in named["talkTime"]]
    assert api.get(f"/v1/jobs/{finished}/export", params={"format": "mp3"}).status_code == 400
    assert api.get(f"/v1/jobs/{failed}/export", params={"format": "srt"}).status_code == 409


def test_the_log_says_how_each_job_ended(server, finished, failed):
    log = server.jobs_log()
    ended = rf"job {finished} succeeded after ([\d.]+) s \(attempt 1\): 30\.0 s of audio, real-time factor ([\d.]+)"
    ran = re.search(ended, log)
    # The time is printed to 0.1 s and the factor from the unrounded time: 0.005 is 0.15 s of 30.
    assert ran and float(ran[2]) == pytest.approx(float(ran[1]) / 30.0, abs=0.005)
    assert re.search(rf"job {failed} failed after [\d.]+ s \(attempt 1\)\n", log)


@pytest.mark.parametrize(
    ("url", "stem"),
    [
        ("media://sample.wav", "sample"),
        ("media://meetings/2024-01-15/call.tar.wav", "call.tar"),
        ("media://web/lq3x9k2-a8f3zz-Board_meeting_.mp3", "Board_meeting"),  # the page's upload prefix goes
        ("https://example.com/a/r%C3%A9union%20du%20lundi.m4a?token=x#t=3", "r_union_du_lundi"),
        ("https://example.com/", "JOB"),
        ("media://web/lq3x9k2-a8f3zz-", "JOB"),
        (None, "JOB"),
    ],
)
def test_exports_are_named_after_the_input_file(url, stem):
    assert media_stem(url, "JOB") == stem


def test_audio_download_answers_range_requests(api, sample_media):
    url = api.post("/v1/media/output", json={"url": sample_media}).json()["url"]
    size = SAMPLE.stat().st_size
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes" and whole.content == SAMPLE.read_bytes()
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == SAMPLE.read_bytes()[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{size}"
    tail = httpx.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == SAMPLE.read_bytes()[-10:]
    beyond = httpx.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    assert set(beyond.json()) == {"requestId", "message"}
    malformed = httpx.get(url, headers={"Range": "lines=1-2"})
    assert malformed.status_code == 400 and malformed.json()["errors"][0]["field"] == "Range"


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=5-2", 400),  # start after end
        ("bytes=abc", 400),  # no range in it
        ("bytes=-", 400),
        ("lines=0-9", 400),
        ("BYTES = 0-9", 206),  # the unit is read as Starlette reads it
        ("bytes=0-0, 5-9", 206),  # two ranges: multipart/byteranges
        ("bytes=-999999999", 206),  # a suffix longer than the file is the whole file
        ("bytes=" + ",".join(["0-1"] * 101), 200),  # more parts than are served: the whole file
    ],
)
def test_every_range_refusal_is_in_the_api_shape(api, sample_media, header, status):
    """Our Range check refuses exactly what FileResponse would: never its plain-text 400 or 416."""
    url = api.post("/v1/media/output", json={"url": sample_media}).json()["url"]
    answer = httpx.get(url, headers={"Range": header})
    assert answer.status_code == status, answer.text
    if status == 400:
        assert answer.json()["errors"][0]["field"] == "Range"


def test_vocabulary_names_what_the_python_modules_define(server):
    answer = httpx.get(f"{server.url}/web/vocabulary")  # no key: names only
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "models": list(DIARIZATION_MODELS),
        "defaultModel": DEFAULT_MODEL,
        "transcribingModels": ["precision-2"],  # as in pyannoteAI
        "statuses": list(STATUSES),
        "terminalStatuses": list(TERMINAL),
        "exportFormats": list(FORMATS),
        # A voiceprint job has no turns: the page links only the others to a result view.
        "jobKinds": {
            "diarize": {"hasSpeakers": True},
            "voiceprint": {"hasSpeakers": False},
            "identify": {"hasSpeakers": True},
        },
    }
    assert DEFAULT_MODEL in DIARIZATION_MODELS and set(TERMINAL) < set(STATUSES)


def test_the_page_holds_no_copy_of_the_vocabulary(server):
    """The page's choices come from /web/vocabulary: neither the page nor its scripts list them."""
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200
    assert re.findall(r"<option[^>]*>([^<]*)</option>", page.text) == ["all"]  # the status filter's own
    assert "data-format" not in page.text
    scripts = sorted(path.name for path in (WEB_DIR / "static").glob("*.js"))
    assert "app.js" in scripts and len(scripts) > 1
    for name in scripts:
        script = httpx.get(f"{server.url}/static/{name}")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"], name
        for word in (*DIARIZATION_MODELS, *FORMATS):
            assert f'"{word}"' not in script.text, (name, word)
