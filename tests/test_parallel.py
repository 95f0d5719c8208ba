"""Model work on Python threads of one torch thread each, and the thread counts the server derives from its cores."""

import os
import threading
import time

import numpy as np
import pytest
import torch

from diarist import models
from diarist.audio import load_audio
from diarist.pipeline.embedding import FEATURE_STEP_SAMPLES, backbone_features
from diarist.pipeline.parallel import threaded_map
from diarist.settings import Settings, default_workers, usable_cores

from .conftest import SAMPLE


@pytest.fixture
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_threaded_map_keeps_order_and_runs_one_torch_thread_per_python_thread(two_torch_threads):
    seen = []

    def work(i: int) -> int:
        seen.append((threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled()))
        return i * i

    assert list(threaded_map(work, list(range(20)))) == [i * i for i in range(20)]
    assert {count for _, count, _ in seen} == {1}
    assert not any(grad for _, _, grad in seen)
    assert all(name.startswith("diarist-model") for name, _, _ in seen)
    # The caller keeps its count, and so does a thread started afterwards (torch's default for new threads).
    assert torch.get_num_threads() == 2
    later = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [2]


def test_threaded_map_with_one_thread_runs_in_the_caller():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        names = list(threaded_map(lambda _: threading.current_thread().name, [0, 1, 2]))
    finally:
        torch.set_num_threads(before)
    assert names == [threading.current_thread().name] * 3


def test_abandoning_threaded_map_cancels_the_items_not_started(two_torch_threads):
    started = []

    def work(i: int) -> int:
        started.append(i)
        time.sleep(0.02)
        return i

    results = threaded_map(work, list(range(50)))
    assert next(results) == 0
    results.close()  # what an exception in the caller's loop (a canceled job) does
    assert len(started) < 50


@pytest.mark.slow
def test_threaded_backbone_equals_the_single_threaded_one():
    """Chunks computed on two threads land where the serial loop puts them, with the same values."""
    audio = load_audio(SAMPLE)
    frames = -(-len(audio) // FEATURE_STEP_SAMPLES)
    speech = np.ones(frames, dtype=bool)
    speech[250:750] = False  # the second and third 5 s chunks have no speech: they stay zero
    backbone = models.torch_backbone(models.load_embedding())
    before = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(1)
            serial = backbone_features(backbone, audio, speech, chunk=5.0, context=1.0)
            torch.set_num_threads(2)
            threaded = backbone_features(backbone, audio, speech, chunk=5.0, context=1.0)
    finally:
        torch.set_num_threads(before)
    assert serial[:, 250:750].abs().sum() == 0 and serial[:, :250].abs().sum() > 0
    torch.testing.assert_close(threaded, serial, rtol=1e-4, atol=1e-4)


@pytest.fixture
def one_core():
    """This process (and so usable_cores) restricted to a single core, as a container's cpuset would."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    yield
    os.sched_setaffinity(0, cores)


def test_server_threads_follow_the_usable_cores(one_core, monkeypatch, tmp_path):
    monkeypatch.setenv("DIARIST_DATA_DIR", str(tmp_path))
    assert usable_cores() == 1
    settings = Settings.load()
    assert settings.workers == default_workers() == 1
    assert settings.worker_threads() == 1
    assert Settings.load(workers=3).worker_threads() == 1  # never fewer than one


def test_worker_threads_share_the_cores_among_workers(monkeypatch, tmp_path):
    monkeypatch.setenv("DIARIST_DATA_DIR", str(tmp_path))
    cores = len(os.sched_getaffinity(0))
    assert Settings.load(workers=1).worker_threads() == cores
    assert Settings.load(workers=cores).worker_threads() == 1
    monkeypatch.setenv("DIARIST_THREADS_PER_WORKER", "3")
    assert Settings.load(workers=cores).worker_threads() == 3
    assert default_workers() == max(1, cores // 4)
