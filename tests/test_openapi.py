"""/openapi.json describes the pyannoteAI contract as the live server keeps it, and schemathesis agrees."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from diarist.vocabulary import NAME_PATTERN, name_problem
from diarist.voiceprints import encode

from .live import create_key, error_fields, upload, wait_for

# The operationIds of pyannoteAI's published OpenAPI; the last four are diarist's own.
OPERATIONS = {
    ("/v1/test", "get"): "testKey",
    ("/v1/diarize", "post"): "diarize",
    ("/v1/voiceprint", "post"): "voiceprint",
    ("/v1/identify", "post"): "identify",
    ("/v1/jobs/{jobId}", "get"): "getJobById",
    ("/v2/jobs", "get"): "getJobsByTeamV2",
    ("/v1/jobs", "get"): "getJobsByTeam",
    ("/v1/media/input", "post"): "getMediaUploadURL",
    ("/v1/media/output", "post"): "getMediaDownloadURL",
    ("/v1/jobs/{jobId}", "delete"): "cancelJob",
    ("/v1/media/upload/{token}", "put"): "uploadMedia",
    ("/v1/media/download/{token}", "get"): "downloadMedia",
}
PRESIGNED = {"uploadMedia", "downloadMedia"}
MILLISECONDS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(scope="module")
def spec(server) -> dict:
    return httpx.get(f"{server.url}/openapi.json").json()


def operations(spec: dict) -> dict[str, dict]:
    return {op["operationId"]: op for item in spec["paths"].values() for op in item.values()}


def component(spec: dict, name: str) -> dict:
    return spec["components"]["schemas"][name]


def test_operation_ids_are_the_references(spec):
    found = {(path, method): op["operationId"] for path, item in spec["paths"].items() for method, op in item.items()}
    assert {k: v for k, v in found.items() if k in OPERATIONS} == OPERATIONS


def test_bearer_scheme_on_every_operation_that_needs_a_key(spec):
    assert spec["components"]["securitySchemes"]["api-key"]["type"] == "http"
    assert spec["components"]["securitySchemes"]["api-key"]["scheme"] == "bearer"
    for name, op in operations(spec).items():
        if name in PRESIGNED or name == "health":
            assert "security" not in op, name
        else:
            assert op["security"] == [{"api-key": []}], name
            assert {"401", "429"} <= set(op["responses"]), name


def test_no_422_and_400_where_input_is_validated(spec):
    ops = operations(spec)
    assert all("422" not in op["responses"] for op in ops.values())
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for name in ("diarize", "getJobsByTeamV2", "getJobsByTeam", "getMediaUploadURL", "getMediaDownloadURL"):
        schema = ops[name]["responses"]["400"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ValidationErrorResponse"}
    assert "400" not in ops["testKey"]["responses"]
    assert set(component(spec, "ValidationErrorResponse")["required"]) == {"message", "errors"}
    assert set(component(spec, "FieldError")["required"]) == {"field", "message"}
    assert set(component(spec, "ApiError")["required"]) == {"requestId", "message"}


def test_job_outputs_are_typed(spec):
    output = component(spec, "JobOut")["properties"]["output"]
    refs = {branch["$ref"].rsplit("/", 1)[1] for branch in output["anyOf"]}
    assert refs == {"DiarizationJobOutput", "IdentificationJobOutput", "VoiceprintJobOutput", "JobError"}  # never null
    diarization = component(spec, "DiarizationJobOutput")
    assert diarization["required"] == ["diarization"]
    assert set(diarization["properties"]) == {
        "diarization",
        "exclusiveDiarization",
        "confidence",
        "wordLevelTranscription",
        "turnLevelTranscription",
        "talkTime",  # diarist's own: the official SDK hands the output over as a dict, extra keys and all
        "warning",
    }
    assert set(component(spec, "TalkTime")["required"]) == {"speaker", "seconds"}
    assert set(component(spec, "Confidence")["required"]) == {"score", "resolution"}
    assert "confidence" in component(spec, "DiarizationSegment")["properties"]
    assert set(component(spec, "TranscriptionSegment")["required"]) == {"start", "end", "text", "speaker"}
    assert component(spec, "JobError")["required"] == ["error"]
    assert "identification" in component(spec, "IdentificationJobOutput")["properties"]
    for name in ("createdAt", "updatedAt"):
        assert component(spec, "JobOut")["properties"][name]["format"] == "date-time"
    assert component(spec, "JobListItem")["properties"]["createdAt"]["format"] == "date-time"


@pytest.mark.parametrize(
    "name", ["a.wav", "meetings/2024-01-15/call.wav", "x_y-z", "a b", "é.wav", "abc\n", "a?b", "", "a" * 248]
)
def test_media_url_pattern_agrees_with_the_server(spec, api, name):
    rule = component(spec, "MediaRequest")["properties"]["url"]
    assert rule["pattern"].startswith("^") and rule["pattern"].endswith("$")
    url = f"media://{name}"
    # JSON Schema's `$` is the end of the text; in Python that is \Z.
    valid = re.search(rule["pattern"][:-1] + r"\Z", url) is not None and len(url) <= rule["maxLength"]
    answer = api.post("/v1/media/input", json={"url": url})
    assert answer.status_code == (201 if valid else 400), answer.text


def allows(rule: dict, value: str) -> bool:
    """Whether a string field's rule in the OpenAPI document allows `value`."""
    branches = [branch for branch in rule.get("anyOf", []) if branch.get("type") != "null"]
    if branches and not any(allows(branch, value) for branch in branches):
        return False
    pattern = rule.get("pattern", "")
    # JSON Schema's `$` is the end of the text; in Python that is \Z.
    return re.search(pattern.replace("$", r"\Z"), value) is not None and len(value) <= rule.get("maxLength", len(value))


VOICEPRINT = encode(np.ones(192), 10.0)
HTTP_URLS = [
    "http://93.184.216.34/a.wav",
    "HTTPS://93.184.216.34:8443/a%20b.wav?x=1",
    "https://user:secret@93.184.216.34/a.wav",
    "example.com/a.wav",
    "ftp://93.184.216.34/a.wav",
    "http:///a.wav",
    "http://93.184.216.34/a\tb.wav",
    "media://a.wav",
]
MEDIA_URLS = ["media://meetings/call.wav", "media://" + "a" * 247, "media://" + "a" * 248, "media://a b"]
NO_JOB = {"numSpeakers": 2, "minSpeakers": 2}  # refused by the route, after the fields' own checks
UPLOADED = {"url": "media://a.wav", **NO_JOB}
# (operation, component and property, the 400's field, a body whose None is the value, the values)
FIELDS = [
    ("/v1/diarize", "DiarizeRequest.url", "url", {"url": None, **NO_JOB}, HTTP_URLS + MEDIA_URLS),
    ("/v1/diarize", "DiarizeRequest.webhook", "webhook", {**UPLOADED, "webhook": None}, HTTP_URLS),
    # Only refused values: an allowed one would open a stream.
    ("/v1/live", "CreateStream.webhook", "webhook", {"keepAudio": True, "webhook": None}, HTTP_URLS[3:]),
    (
        "/v1/identify",
        "VoiceprintIn.label",
        "voiceprints[0].label",
        {**UPLOADED, "voiceprints": [{"label": None, "voiceprint": VOICEPRINT}]},
        ["Ann", "José Núñez", "SPEAKERS_Team", "   ", "Ann\u2028Lee", "A\x85", "\u017fpeaker_1", "speaker_1"],
    ),
    (
        "/v1/identify",
        "VoiceprintIn.voiceprint",
        "voiceprints[0].voiceprint",
        {**UPLOADED, "voiceprints": [{"label": "Ann", "voiceprint": None}]},
        [VOICEPRINT, f" {VOICEPRINT}\n", "not base64!", VOICEPRINT[:-7], ""],
    ),
]


def filled(body: Any, value: str) -> Any:
    """`body` with `value` where it holds None."""
    if isinstance(body, dict):
        return {k: value if v is None else filled(v, value) for k, v in body.items()}
    if isinstance(body, list):
        return [filled(item, value) for item in body]
    return body


@pytest.mark.parametrize(("path", "where", "field", "body", "values"), FIELDS, ids=[f[1] for f in FIELDS])
def test_field_rules_agree_with_the_server(spec, api, path, where, field, body, values):
    """A value the schema allows is not refused for its form, and one it refuses is refused."""
    schema, name = where.split(".")
    rule = component(spec, schema)["properties"][name]
    for value in values:
        refused = field in error_fields(api.post(path, json=filled(body, value)))
        assert allows(rule, value) is not refused, (value, rule)


def test_name_pattern_is_name_problem():
    """The pattern of names in the OpenAPI document, on every character of the Basic Multilingual Plane."""
    pattern = re.compile(NAME_PATTERN.replace("$", r"\Z"))
    for code in range(0x10000):
        if 0xD800 <= code < 0xE000:  # surrogates: no JSON string holds one alone that a request can carry
            continue
        for name in (chr(code), f"a{chr(code)}b"):
            assert (pattern.search(name) is not None) is (name_problem(name) is None), hex(code)


def test_speaker_names_rule_refuses_line_breaks(spec):
    body = spec["paths"]["/v1/jobs/{jobId}/speakers"]["put"]["requestBody"]["content"]["application/json"]
    rule = body["schema"]["additionalProperties"]
    assert allows(rule, "Alice") and allows(rule, "")
    assert not any(allows(rule, f"Ann{c}Lee") for c in "\n\t\x85\u2028\u2029")


def test_405_lists_every_method_of_the_path(api):
    put = api.put("/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert put.status_code == 405
    assert put.headers["allow"] == "DELETE, GET"
    assert set(put.json()) == {"requestId", "message"}
    assert api.post("/v1/test").headers["allow"] == "GET"


def test_list_and_job_timestamps_have_the_same_form(api):
    job_id = api.post("/v1/diarize", json={"url": upload(api, b"junk", "stamp.wav")}).json()["jobId"]
    job = wait_for(api, job_id)
    (item,) = [i for i in api.get("/v2/jobs", params={"limit": 100}).json()["items"] if i["id"] == job_id]
    (older,) = [i for i in api.get("/v1/jobs", params={"take": 100}).json()["items"] if i["id"] == job_id]
    assert MILLISECONDS_Z.fullmatch(job["createdAt"]) and MILLISECONDS_Z.fullmatch(job["updatedAt"])
    assert item["createdAt"] == older["createdAt"] == job["createdAt"]


def test_largest_speaker_count_is_accepted(api):
    # The count passes validation: what stops this request is the media that was never uploaded.
    assert api.post("/v1/diarize", json={"url": "media://never-uploaded", "maxSpeakers": 100}).status_code == 404


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_or_contract_violation():
    """The bench run, bounded: every operation, valid and invalid inputs, 10 examples each, fixed seed."""
    script = Path(__file__).parents[1] / "bench" / "schemathesis_run.py"
    done = subprocess.run(
        [sys.executable, str(script), "--max-examples", "10", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_real_outputs_conform_to_the_schema(server, api, sample_media):
    """A succeeded job with every option, a failed one and the lists, checked by schemathesis's validator."""
    import schemathesis

    key = create_key(server.data_dir, "conformance", "--rate-limit", "0")
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    job = {"url": sample_media, "model": "community-1", "exclusive": True, "confidence": True}
    succeeded = api.post("/v1/diarize", json=job | {"turnLevelConfidence": True}).json()["jobId"]
    failed = api.post("/v1/diarize", json={"url": upload(api, b"junk", "junk.wav")}).json()["jobId"]
    for job_id in (succeeded, failed):
        wait_for(api, job_id)
        schema["/v1/jobs/{jobId}"]["GET"].validate_response(api.get(f"/v1/jobs/{job_id}"))
    schema["/v2/jobs"]["GET"].validate_response(api.get("/v2/jobs"))
    schema["/v1/jobs"]["GET"].validate_response(api.get("/v1/jobs"))
    with server.client(key) as stranger:
        schema["/v1/jobs/{jobId}"]["GET"].validate_response(stranger.get(f"/v1/jobs/{succeeded}"))
