"""What docs/architecture.md promises and a test can check: every registered job kind has its route,
request schema, queue, CLI command and place in the API's documents; a spec survives being stored;
every module the page names exists."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from diarist.api.routes import router
from diarist.cli.parser import build_parser
from diarist.jobs.celery_app import parse_queues
from diarist.jobs.kinds import KINDS
from diarist.jobs.spec import DiarizeSpec, IdentifySpec, JobSpec, LiveSpec, VoiceprintSpec

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "src" / "diarist"


def submit_route(kind: str) -> APIRoute:
    routes = [r for r in router.routes if isinstance(r, APIRoute) and r.path == f"/v1/{kind}"]
    assert len(routes) == 1 and routes[0].methods == {"POST"}, f"no POST /v1/{kind}"
    return routes[0]


def test_the_registry_holds_the_three_kinds_of_the_api():
    assert set(KINDS) == {"diarize", "voiceprint", "identify"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_route_whose_schema_makes_its_spec(kind):
    body = typing.get_type_hints(submit_route(kind).endpoint, include_extras=False)["body"]
    assert body.spec is KINDS[kind].spec
    example = body.model_config["json_schema_extra"]["examples"][0]  # the one the OpenAPI document shows
    spec = body.model_validate(example).to_spec()
    assert type(spec) is KINDS[kind].spec and spec.url == example["url"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_cli_command_and_a_worker_queue(kind):
    commands = build_parser()._subparsers._group_actions[0].choices  # argparse keeps them only here
    assert kind in commands
    assert parse_queues(KINDS[kind].spec(url="media://a").queue)


def test_transcription_goes_to_its_own_queue():
    assert DiarizeSpec(url="media://a", transcription=True).queue == "transcription"
    assert DiarizeSpec(url="media://a").queue == "diarization"


STORED = [
    DiarizeSpec(
        url="media://a.wav",
        webhook="https://example.com/hook",
        webhook_status_only=True,
        model="community-1",
        min_speakers=2,
        max_speakers=4,
        exclusive=True,
        confidence=True,
        turn_level_confidence=True,
        transcription=True,
        asr_model="whisper-tiny.en",
    ),
    VoiceprintSpec(url="https://example.com/v.wav"),
    IdentifySpec(
        url="media://b", num_speakers=2, voiceprints=(("Ann", "RFZQ"),), exclusive_matching=False, threshold=40
    ),
]


@pytest.mark.parametrize("spec", STORED, ids=lambda s: s.kind)
def test_a_spec_reads_back_as_it_was_stored(spec: JobSpec):
    assert type(spec).from_json(spec.to_json()) == spec


def test_the_stored_request_keeps_the_api_names():
    """Jobs queued by an older server still read: the stored form is the API's own."""
    stored = STORED[2].to_json()
    assert stored["url"] == "media://b" and stored["numSpeakers"] == 2 and stored["webhookStatusOnly"] is False
    assert stored["voiceprints"] == [{"label": "Ann", "voiceprint": "RFZQ"}]
    assert stored["matching"] == {"exclusive": False, "threshold": 40}
    older = {"url": "media://c", "model": "precision-2", "transcriptionConfig": {"model": "whisper-base"}}
    assert DiarizeSpec.from_json(older) == DiarizeSpec(url="media://c", asr_model="whisper-base")


def test_a_live_stream_spec_reads_back_and_reads_what_older_servers_stored():
    spec = LiveSpec(model="precision-2", latency=1.5, keep_audio=True, webhook="https://example.com/hook")
    assert LiveSpec.from_json(spec.to_json()) == spec
    assert spec.to_json()["keepAudio"] is True
    # Streams created before the spec stored the request body without its defaults.
    assert LiveSpec.from_json({"keepAudio": True}) == LiveSpec(keep_audio=True)
    job = spec.recording_spec("media://live-x.wav")
    assert (job.kind, job.url, job.model, job.webhook) == ("diarize", "media://live-x.wav", "precision-2", spec.webhook)
    assert LiveSpec().recording_spec("media://y").model == DiarizeSpec(url="media://y").model


def test_every_module_the_architecture_page_names_exists():
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([a-z_/]+(?:\.py|/))", page))
    assert len(named) > 30
    # A name is a path in the package or the repository, or a file of the folder the line is about.
    files = {path.name for path in PACKAGE.rglob("*.py")}
    missing = sorted(
        name for name in named if not (PACKAGE / name).exists() and not (ROOT / name).exists() and name not in files
    )
    assert not missing, f"docs/architecture.md names what is not there: {missing}"
