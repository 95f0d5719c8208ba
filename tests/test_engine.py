"""The engine (models, threads, device owned by one object) and the one progress-and-timing hook."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from diarist import models
from diarist.engine import DeviceUnavailableError, Engine, resolve_device
from diarist.hooks import Fraction, StageTimes
from diarist.jobs.runner import JobAbandoned, ProgressReporter
from diarist.service import DiarizeOptions, diarize

from .conftest import SAMPLE

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def test_auto_picks_the_gpu_only_where_torch_sees_one():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@NO_GPU
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(DeviceUnavailableError, match=r"sees no GPU.*--device cpu"):
        Engine("cuda")
    done = subprocess.run(
        [sys.executable, "-m", "diarist", "diarize", str(SAMPLE), "--device", "cuda"], capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("diarist: error: device cuda was asked for") and "Traceback" not in done.stderr


def test_the_thread_budget_is_applied_to_torch():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        Engine("cpu", threads=1)
        assert torch.get_num_threads() == 1
        Engine("cpu")  # no budget: torch's own count stays
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_one_engine_loads_the_models_once_for_every_run(monkeypatch):
    loads: list[str] = []
    for name in ("load_segmentation", "load_embedding", "load_backbone"):
        real = getattr(models, name)
        monkeypatch.setattr(models, name, lambda *a, _real=real, _name=name: loads.append(_name) or _real(*a))
    engine = Engine("cpu")
    options = DiarizeOptions(model="community-1")
    first = diarize(engine, options, SAMPLE)
    nets = (engine.segmentation(), engine.embedding(), engine.backbone())
    steps: list[tuple[str, object]] = []
    second = diarize(engine, options, SAMPLE, lambda step, artifact=None, **_: steps.append((step, artifact)))
    assert sorted(loads) == ["load_backbone", "load_embedding", "load_segmentation"]
    again = (engine.segmentation(), engine.embedding(), engine.backbone())
    assert all(a is b for a, b in zip(again, nets, strict=True))
    assert first.output == second.output
    assert steps[0] == ("load", engine)  # the second run hears the engine it ran on


def test_the_pipeline_reports_each_step_and_its_time():
    seen: list[str] = []
    fractions: list[float] = []
    times = StageTimes()
    progress = Fraction(fractions.append)

    def hook(step, artifact=None, *, completed=None, total=None):
        if completed is None:
            seen.append(step)
        times(step, artifact, completed=completed, total=total)
        progress(step, artifact, completed=completed, total=total)

    done = diarize(Engine("cpu"), DiarizeOptions(model="community-1"), SAMPLE, hook)
    assert seen[0] == "load" and seen[-2:] == ["clustering", "reconstruction"]
    assert {"decode", "segmentation", "embeddings"} <= set(seen)
    assert set(done.result.timings) == set(times.seconds) == set(seen)
    assert all(seconds >= 0 for seconds in done.result.timings.values())
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_fraction_weighs_transcription_half_once_announced():
    heard: list[float] = []
    progress = Fraction(heard.append)
    progress("transcription", completed=0, total=None)
    progress("segmentation", completed=50, total=100)
    progress("download", completed=1000)  # no share: it only gives a chance to stop
    progress("embeddings", completed=100, total=100)
    progress("transcription", completed=100, total=100)
    progress("segmentation", completed=10, total=100)  # never goes back
    assert heard == pytest.approx([0.0, 0.075, 0.425, 0.925, 0.925])


class ProgressStore:
    """The store as ProgressReporter writes to it: each progress kept; False once the job is canceled."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.canceled = False

    def report_progress(self, job_id: str, token: int, progress: int) -> bool:
        self.written.append(progress)
        return not self.canceled


def test_job_progress_listens_to_the_steps(monkeypatch):
    monkeypatch.setattr("diarist.jobs.runner.PROGRESS_INTERVAL", 0.0)
    store = ProgressStore()
    reporter = ProgressReporter(store, "j", 1)  # type: ignore[arg-type]
    reporter.downloaded(4096)
    for step, completed in (("segmentation", 40), ("embeddings", 40), ("segmentation", 100), ("embeddings", 100)):
        reporter(step, completed=completed, total=100)
    reporter("clustering", object())
    assert store.written[0] == 0 and 10 <= store.written[1] <= 15 and store.written[-2:] == [99, 99]
    assert store.written == sorted(store.written) and len(store.written) == 6
    store.canceled = True
    with pytest.raises(JobAbandoned):
        reporter("reconstruction", object())
