"""The service survives `kill -9`: jobs and results are in the database, interrupted jobs run again."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from diarist.jobs.store import Store

from .conftest import SAMPLE
from .live import LiveServer, create_key, upload, wait_for


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_kill_9_while_a_job_runs_then_restart(tmp_path, long_audio):
    data_dir = tmp_path / "state"
    key = create_key(data_dir, "durable", "--rate-limit", "0")
    first = LiveServer(data_dir).start()
    try:
        with first.client(key) as api:
            done_id = api.post("/v1/diarize", json={"url": upload(api, SAMPLE, "s.wav"), "model": "community-1"})
            done = wait_for(api, done_id.json()["jobId"])
            media = upload(api, long_audio, "long.wav")
            job_id = api.post("/v1/diarize", json={"url": media, "model": "community-1"}).json()["jobId"]
            queued_id = api.post("/v1/diarize", json={"url": media, "model": "community-1"}).json()["jobId"]
            wait_for(api, job_id, statuses=("running",))
        workers = children(first.process.pid)
        assert workers
        first.kill()
    finally:
        first.stop()
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers), "worker processes outlived the killed server"

    second = LiveServer(data_dir).start()
    try:
        with second.client(key) as api:
            assert api.get(f"/v1/jobs/{done['jobId']}").json() == done
            assert wait_for(api, job_id)["status"] == "succeeded"
            assert wait_for(api, queued_id)["status"] == "succeeded"
    finally:
        second.stop()
    store = Store(f"sqlite:///{data_dir / 'diarist.db'}")
    assert store.get_job(job_id).attempts == 2
    assert store.get_job(queued_id).attempts == 1
    assert "re-queued 1 jobs" in second.log()


def test_second_server_on_the_same_data_dir_is_refused(server):
    other = LiveServer(server.data_dir, fleet=server.fleet)
    with pytest.raises(AssertionError, match="another diarist server is using"):
        other.start()
    other.stop()
