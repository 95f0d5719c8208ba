"""Live streams against a real `diarist serve`, on the embedded default and in celery mode on PostgreSQL:
`POST /v1/live`, `GET /v1/live/{id}` and the WebSocket, with a client written to pyannoteAI's protocol
(tests/stream_client.py). Each rule of the protocol is tried as a client would break it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.io.wavfile
import websocket

from .live import Fleet, LiveServer, create_key, run_cli, wait_for
from .stream_client import FRAME, Received, connect, create_stream, frames_of, read_until_closed, stream

IDLE_TIMEOUT = 3.0
ENV = {
    "DIARIST_LIVE_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
    "DIARIST_LIVE_MAX_STREAMS": "50",
    "DIARIST_LIVE_THREADS": "2",
}


@pytest.fixture(scope="module", params=["local", pytest.param("celery", marks=pytest.mark.fleet)])
def live_server(request, tmp_path_factory):
    from .services import drop_database, postgres_url, redis_url

    fleet = Fleet(postgres_url("live_suite"), redis_url("live_suite")) if request.param == "celery" else None
    server = LiveServer(tmp_path_factory.mktemp("live"), env=ENV, workers=0, fleet=fleet).start()
    yield server
    server.stop()
    if fleet is not None:
        drop_database(fleet.database_url)


@pytest.fixture
def owner(live_server):
    """A key of its own for each test: streams created and not opened hold a place until their token expires."""
    key = create_key(live_server.data_dir, "live", "--rate-limit", "0")
    with live_server.client(key) as client:
        yield key, client


@pytest.fixture(scope="module")
def two_voices(sample_audio) -> np.ndarray:
    """14 s of the sample in which its two people take turns (6.5-20.5 s by the reference)."""
    return sample_audio[int(6.5 * 16000) : int(20.5 * 16000)]


def status_of(client: httpx.Client, stream_id: str, wanted: str | None = None, timeout: float = 10.0) -> dict:
    """The stream's record, once its status is `wanted` (when given)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"/v1/live/{stream_id}")
        assert answer.status_code == 200, answer.text
        if wanted is None or answer.json()["status"] == wanted or time.monotonic() > deadline:
            return answer.json()
        time.sleep(0.2)


@pytest.mark.slow
def test_a_stream_from_creation_to_its_last_event(live_server, owner, two_voices):
    key, client = owner
    created = create_stream(client)
    assert set(created) == {"id", "url"} and created["url"].startswith("ws://")
    assert "token=" in created["url"] and key.key not in created["url"]
    before = status_of(client, created["id"])
    assert before == {"id": created["id"], "status": "created", "startedAt": None, "completedAt": None, "input": {}}

    received = stream(connect(created["url"]), frames_of(two_voices))
    assert received.errors == [] and received.close_code == 1000
    duration = len(frames_of(two_voices)) * 0.1
    open_speakers: set[str] = set()
    last = 0.0
    for event in received.events:
        assert set(event) == {"type", "data"} and set(event["data"]) == {"timestamp", "speaker"}
        speaker, timestamp = event["data"]["speaker"], event["data"]["timestamp"]
        assert last <= timestamp <= duration + 1e-6
        last = timestamp
        if event["type"] == "diarization_speaker_start":
            assert speaker not in open_speakers
            open_speakers.add(speaker)
        else:
            assert event["type"] == "diarization_speaker_end" and speaker in open_speakers
            open_speakers.remove(speaker)
    assert open_speakers == set(), "end_of_stream closes every open turn"
    turns = received.turns(duration)
    assert len({speaker for *_, speaker in turns}) == 2
    assert sum(end - start for start, end, _ in turns) > 0.6 * 12.0  # the excerpt holds 12.7 s of speech

    done = status_of(client, created["id"], "done")
    assert done["status"] == "done" and done["startedAt"] and done["completedAt"]
    assert done["startedAt"] <= done["completedAt"]
    listing = run_cli("keys", "list", data_dir=live_server.data_dir)
    assert key.key not in listing


def test_the_url_opens_once(live_server, owner):
    _, client = owner
    created = create_stream(client)
    first = connect(created["url"])
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(created["url"])
    assert refused.value.status_code == 403
    body = json.loads(refused.value.resp_body)
    assert set(body) == {"requestId", "message"} and "used" in body["message"]
    received = stream(first, frames_of(np.zeros(FRAME * 5, dtype=np.float32)))
    assert received.close_code == 1000 and received.events == []  # silence: no speaker


def test_a_wrong_token_or_stream_is_refused(live_server, owner):
    _, client = owner
    created = create_stream(client)
    for url in (created["url"].replace("token=", "token=x"), created["url"].replace(created["id"], "nope")):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            connect(url)
        assert refused.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(live_server.url.replace("http", "ws") + "/v1/jobs")
    assert refused.value.status_code == 404 and "requestId" in json.loads(refused.value.resp_body)
    assert client.get("/v1/live/00000000-0000-0000-0000-000000000000").status_code == 404


def test_another_keys_stream_is_not_found(live_server, owner):
    _, client = owner
    created = create_stream(client)
    other = create_key(live_server.data_dir, "other")
    with live_server.client(other) as stranger:
        assert stranger.get(f"/v1/live/{created['id']}").status_code == 404
    assert httpx.post(f"{live_server.url}/v1/live", json={}).status_code == 401


def test_a_frame_of_another_size_is_refused_and_the_stream_goes_on(live_server, owner):
    _, client = owner
    created = create_stream(client)
    frames = frames_of(np.zeros(FRAME * 3, dtype=np.float32))
    received = stream(connect(created["url"]), [frames[0], b"\0" * 6000, frames[1]])
    assert received.errors == ["Invalid chunk size"] and received.close_code == 1000
    assert status_of(client, created["id"], "done")["status"] == "done"


def test_audio_faster_than_real_time_closes_the_stream(live_server, owner):
    _, client = owner
    created = create_stream(client)
    received = stream(connect(created["url"]), frames_of(np.zeros(FRAME * 80, dtype=np.float32)), pace=0)
    assert received.close_code == 1008 and any("faster than real time" in e for e in received.errors)
    assert status_of(client, created["id"], "error")["status"] == "error"


@pytest.mark.slow
def test_a_silent_client_is_closed_after_the_idle_timeout(live_server, owner):
    _, client = owner
    created = create_stream(client)
    socket = connect(created["url"])
    start = time.monotonic()
    received = read_until_closed(socket, Received())
    assert IDLE_TIMEOUT - 0.5 < time.monotonic() - start < IDLE_TIMEOUT + 10
    assert received.close_code == 1001 and "No audio" in received.errors[0]
    assert status_of(client, created["id"], "error")["status"] == "error"


@pytest.mark.slow
def test_a_client_gone_mid_stream_ends_it(live_server, owner, two_voices):
    _, client = owner
    created = create_stream(client)
    socket = connect(created["url"])
    for frame in frames_of(two_voices)[:10]:
        socket.send_binary(frame)
        time.sleep(0.1)
    socket.sock.close()  # no close frame, no end_of_stream: the network went away
    record = status_of(client, created["id"], "error")
    assert record["status"] == "error" and record["completedAt"]


def test_a_revoked_key_cannot_open_its_stream(live_server):
    key = create_key(live_server.data_dir, "revoked-live")
    with live_server.client(key) as client:
        created = create_stream(client)
        run_cli("keys", "revoke", key.key.split("_")[1], data_dir=live_server.data_dir)  # dia_<id>_<secret>
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(created["url"])
    assert refused.value.status_code == 401


@pytest.mark.slow
def test_open_streams_are_capped_per_key_and_per_server(tmp_path):
    caps = {"DIARIST_LIVE_MAX_STREAMS": "2", "DIARIST_LIVE_MAX_STREAMS_PER_KEY": "1"}
    server = LiveServer(tmp_path / "caps", env=ENV | caps, workers=0).start()
    try:
        first, second, third = (create_key(server.data_dir, name) for name in ("a", "b", "c"))
        with server.client(first) as a, server.client(second) as b, server.client(third) as c:
            opened = create_stream(a)
            refused = a.post("/v1/live", json={})
            assert refused.status_code == 429 and refused.headers["Retry-After"]
            assert set(refused.json()) == {"requestId", "message"} and "This key" in refused.json()["message"]
            create_stream(b)
            refused = c.post("/v1/live", json={})
            assert refused.status_code == 429 and "This server" in refused.json()["message"]
            assert stream(connect(opened["url"]), []).close_code == 1000  # an ended stream frees its place
            create_stream(a)
    finally:
        server.stop()


def test_a_page_of_another_origin_cannot_open_a_stream(live_server, owner):
    _, client = owner
    created = create_stream(client)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(created["url"], origin="https://evil.example")
    assert refused.value.status_code == 403
    same = connect(created["url"], origin=live_server.url)
    assert stream(same, []).close_code == 1000


def test_metrics_count_open_streams(live_server, owner):
    _, client = owner
    created = create_stream(client)
    socket = connect(created["url"])
    socket.send_binary(frames_of(np.zeros(FRAME, dtype=np.float32))[0])
    deadline = time.monotonic() + 10
    while "diarist_live_streams 1.0" not in httpx.get(f"{live_server.url}/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert stream(socket, []).close_code == 1000
    assert "diarist_live_streams 0.0" in httpx.get(f"{live_server.url}/metrics").text


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (started from any of its threads), but multiprocessing's tracker."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"resource_tracker" not in command:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_a_stream_whose_server_was_killed_ends_as_an_error(tmp_path, sample_audio):
    server = LiveServer(tmp_path / "killed", env=ENV, workers=0).start()
    key = create_key(server.data_dir, "killed")
    with server.client(key) as client:
        created = create_stream(client)
    socket = connect(created["url"])
    for frame in frames_of(sample_audio[: 16000 * 2]):
        socket.send_binary(frame)
    deadline = time.monotonic() + 60  # the engine process starts with the first stream, and loads its models
    while not (engine := _children(server.process.pid)):
        assert time.monotonic() < deadline, "the live engine process runs beside the server"
        time.sleep(0.2)
    server.kill()
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in engine):  # it notices its server is gone, and exits
        assert time.monotonic() < deadline, "the live engine outlived its server"
        time.sleep(0.2)
    restarted = LiveServer(server.data_dir, env=ENV, workers=0, port=server.port).start()
    try:
        with restarted.client(key) as client:
            record = status_of(client, created["id"])
        assert record["status"] == "error" and record["completedAt"]
    finally:
        restarted.stop()


def _cli(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diarist", "live", *args],
        input=stdin,
        capture_output=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_the_command_line_streams_a_file_to_a_server(live_server, owner, two_voices, tmp_path):
    key, _ = owner
    wav = tmp_path / "two.wav"
    scipy.io.wavfile.write(wav, 16000, two_voices)
    done = _cli(str(wav), "--server", live_server.url, env={"DIARIST_API_KEY": key.key})
    assert done.returncode == 0, done.stderr.decode()
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert {e["type"] for e in events} == {"diarization_speaker_start", "diarization_speaker_end"}
    assert len({e["data"]["speaker"] for e in events}) == 2
    refused = _cli(str(wav), "--server", live_server.url, env={"DIARIST_API_KEY": "dia_nope_nope"})
    assert refused.returncode == 1 and b"refused the stream (401)" in refused.stderr


@pytest.mark.slow
def test_the_command_line_runs_the_engine_itself_on_standard_input(two_voices):
    done = _cli("-", "--fast", "--format", "rttm", stdin=two_voices.astype("<f4").tobytes())
    assert done.returncode == 0, done.stderr.decode()
    lines = [line.split() for line in done.stdout.decode().splitlines()]
    assert lines and all(fields[0] == "SPEAKER" and fields[1] == "stdin" for fields in lines)
    assert {fields[7] for fields in lines} == {"SPEAKER_00", "SPEAKER_01"}
    ends = [float(fields[3]) + float(fields[4]) for fields in lines]
    assert max(ends) <= len(two_voices) / 16000 + 0.1


def test_the_command_line_says_what_it_cannot_do(tmp_path):
    unreachable = _cli("-", "--server", "http://127.0.0.1:9", env={"DIARIST_API_KEY": "k"}, stdin=b"")
    assert unreachable.returncode == 1 and b"cannot reach http://127.0.0.1:9" in unreachable.stderr
    fast = _cli("-", "--fast", "--server", "http://127.0.0.1:9", stdin=b"")
    assert fast.returncode == 1 and b"--fast is for the local engine" in fast.stderr
    assert _cli("-", "--latency", "9").returncode == 2


@pytest.mark.slow
def test_kept_audio_is_diarized_offline_when_the_stream_ends(tmp_path, two_voices):
    server = LiveServer(tmp_path / "kept", env=ENV, workers=1).start()
    try:
        key = create_key(server.data_dir, "kept")
        with server.client(key) as client:
            created = create_stream(client, {"keepAudio": True, "model": "community-1"})
            assert stream(connect(created["url"]), frames_of(two_voices)).close_code == 1000
            deadline = time.monotonic() + 20
            while "jobId" not in (record := status_of(client, created["id"], "done")):
                assert time.monotonic() < deadline, record
                time.sleep(0.2)
            job = wait_for(client, record["jobId"])
            assert job["status"] == "succeeded", job
            assert len({turn["speaker"] for turn in job["output"]["diarization"]}) == 2
            # The kept audio is the stream's, whole: the job's input is an upload of this key.
            assert job["output"]["diarization"][-1]["end"] <= len(frames_of(two_voices)) * 0.1 + 0.05
            plain = create_stream(client)
            assert stream(connect(plain["url"]), frames_of(two_voices[: 16000 * 2])).close_code == 1000
            assert "jobId" not in status_of(client, plain["id"], "done")
    finally:
        server.stop()


def test_a_webhook_is_only_for_kept_audio(owner):
    _, client = owner
    refused = client.post("/v1/live", json={"webhook": "https://example.com/hook"})
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "webhook" and "keepAudio" in refused.json()["errors"][0]["message"]
    internal = client.post("/v1/live", json={"keepAudio": True, "webhook": "http://127.0.0.1:9/hook"})
    assert internal.status_code == 400 and internal.json()["errors"][0]["field"] == "webhook"
    assert client.post("/v1/live", json={"latency": 9}).status_code == 400


@pytest.mark.slow
def test_a_key_revoked_mid_stream_ends_it(live_server, two_voices):
    key = create_key(live_server.data_dir, "revoked-mid-stream")
    with live_server.client(key) as client:
        created = create_stream(client)
    socket = connect(created["url"])
    for frame in frames_of(two_voices)[:10]:
        socket.send_binary(frame)
        time.sleep(0.1)
    # Revoked while the rest plays at real time (13 s, past a check): the command takes seconds to
    # start, longer than the idle timeout on a busy machine, so the stream must not wait for it.
    revoke = threading.Thread(
        target=run_cli, args=("keys", "revoke", key.key.split("_")[1]), kwargs={"data_dir": live_server.data_dir}
    )
    revoke.start()
    received = stream(socket, frames_of(two_voices)[10:])
    revoke.join()
    assert received.close_code == 1008 and any("revoked" in e for e in received.errors)


@pytest.mark.fleet
@pytest.mark.slow
def test_the_replica_holding_the_socket_runs_the_stream_and_any_replica_answers_for_it(tmp_path, two_voices):
    from .services import drop_database, postgres_url, redis_url

    fleet = Fleet(postgres_url("live_replicas"), redis_url("live_replicas"))
    first = LiveServer(tmp_path / "first", env=ENV, fleet=fleet).start()
    second = LiveServer(tmp_path / "second", env=ENV, fleet=fleet).start()
    try:
        key = create_key(first.data_dir, "replicas")
        with first.client(key) as on_first, second.client(key) as on_second:
            created = create_stream(on_first)
            assert created["url"].startswith(first.url.replace("http", "ws"))  # the socket is the first's
            socket = connect(created["url"])
            socket.send_binary(frames_of(two_voices)[0])
            assert status_of(on_second, created["id"], "running")["status"] == "running"
            assert stream(socket, frames_of(two_voices)[1:30]).close_code == 1000
            assert status_of(on_second, created["id"], "done")["status"] == "done"
            metrics = httpx.get(f"{second.url}/metrics").text
            assert "diarist_live_streams 0.0" in metrics  # the second replica ran nothing
    finally:
        first.stop()
        second.stop()
        drop_database(fleet.database_url)


def test_guessing_stream_urls_is_rate_limited_per_address(tmp_path):
    server = LiveServer(tmp_path / "guess", env=ENV | {"DIARIST_AUTH_FAILURES_PER_MINUTE": "3"}, workers=0).start()
    try:
        socket_url = server.url.replace("http", "ws") + "/v1/live/00000000-0000-0000-0000-000000000000/socket"
        codes = []
        for guess in range(5):
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                connect(f"{socket_url}?token=guess{guess}")
            codes.append(refused.value.status_code)
        assert codes[:3] == [403, 403, 403] and codes[3:] == [429, 429]
    finally:
        server.stop()


@pytest.mark.slow
def test_the_command_lines_rttm_names_a_file_with_a_space_in_one_field(two_voices, tmp_path):
    wav = tmp_path / "my meeting.wav"
    scipy.io.wavfile.write(wav, 16000, two_voices[: 16000 * 6])
    done = _cli(str(wav), "--fast", "--format", "rttm")
    assert done.returncode == 0, done.stderr.decode()
    lines = [line.split() for line in done.stdout.decode().splitlines()]
    assert lines and all(len(fields) == 10 and fields[1] == "my_meeting" for fields in lines)


def test_a_frame_over_the_socket_limit_ends_the_stream(live_server, owner):
    _, client = owner
    created = create_stream(client)
    socket = connect(created["url"])
    socket.send_binary(b"\0" * 100_000)  # past the 64 KiB the server reads in one message
    received = read_until_closed(socket, Received())
    assert received.events == []
    assert status_of(client, created["id"], "error")["status"] == "error"
