"""The service survives `kill -9`: jobs and results are in the database, interrupted jobs run again."""

from __future__ import annotations

import os
import signal
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


@pytest.mark.slow
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
            assert api.get(f"/v1/jobs/{job_id}", params={"details": "true"}).json()["attempt"] == 1
            assert "attempt" not in api.get(f"/v1/jobs/{queued_id}", params={"details": "true"}).json()
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
            # The job the kill interrupted ran again: its details say which run it is.
            assert api.get(f"/v1/jobs/{job_id}", params={"details": "true"}).json()["attempt"] == 2
            assert api.get(f"/v1/jobs/{queued_id}", params={"details": "true"}).json()["attempt"] == 1
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


@pytest.mark.slow
def test_paused_local_workers_lose_their_job_to_the_reaper_not_to_the_supervisor(tmp_path, long_audio):
    """Local workers that hang (SIGSTOP) look alive to the supervisor: only the lease gets their job back."""
    data_dir = tmp_path / "state"
    key = create_key(data_dir, "leases", "--rate-limit", "0")
    leases = {"DIARIST_LEASE_SECONDS": "3", "DIARIST_HEARTBEAT_SECONDS": "1", "DIARIST_REAPER_INTERVAL_SECONDS": "1"}
    server = LiveServer(data_dir, env=leases, workers=2).start()
    store = Store(server.database)
    try:
        with server.client(key) as api:
            media = upload(api, long_audio, "long.wav")
            job_id = api.post("/v1/diarize", json={"url": media, "model": "community-1"}).json()["jobId"]
            deadline = time.monotonic() + 120
            while (store.get_job(job_id).progress or 0) == 0:
                assert time.monotonic() < deadline, store.get_job(job_id).status
                time.sleep(0.1)
            paused = children(server.process.pid)
            for pid in paused:
                os.kill(pid, signal.SIGSTOP)
            try:
                while store.get_job(job_id).status != "pending":  # re-queued once the lease expired
                    assert time.monotonic() < deadline + 60, store.get_job(job_id).status
                    time.sleep(0.1)
            finally:
                for pid in paused:
                    os.kill(pid, signal.SIGCONT)
            assert wait_for(api, job_id, timeout=300)["status"] == "succeeded"
    finally:
        server.stop()
    assert store.get_job(job_id).attempts == 2
    assert "re-queued 1 jobs whose worker stopped answering" in server.log()
    assert f"job {job_id} (attempt 1) is no longer this worker's" in server.log()
    store.close()
