"""Run one claimed job: input -> audio -> pipeline -> output, recorded in the store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from diarist.errors import AudioError, DiaristError
from diarist.jobs.media import MediaStore, object_key
from diarist.jobs.net import FetchError, NetPolicy, UrlRefused, download
from diarist.jobs.store import FAILED, SUCCEEDED, Job, Store

if TYPE_CHECKING:
    from diarist.result import DiarizationResult

log = logging.getLogger("diarist.jobs")
PROGRESS_INTERVAL = 1.0  # seconds between progress writes


class JobAbandoned(Exception):
    """The job was canceled or given to another worker while this one ran it."""


class InputError(DiaristError):
    """The job's input could not be turned into a local audio file."""


@dataclass(frozen=True)
class RunnerConfig:
    """What a worker needs to know to run jobs; built from the service settings."""

    media: MediaStore
    downloads: Path
    policy: NetPolicy
    max_input_bytes: int
    max_duration_seconds: float
    asr_models: Path  # where an operator installs the transcription models that are not packaged


def fetch_input(job: Job, config: RunnerConfig) -> tuple[Path, bool]:
    """The local file holding the job's audio, and whether it is a download to delete afterwards."""
    url = job.request["url"]
    if url.startswith("media://"):
        path = config.media.path(job.key_id, object_key(url))
        if not path.exists():
            raise InputError(f"{url} does not exist (uploads are deleted after a while)")
        return path, False
    config.downloads.mkdir(parents=True, exist_ok=True)
    dest = config.downloads / job.id
    download(url, dest, config.policy, config.max_input_bytes)
    return dest, True


class ProgressReporter:
    """Writes progress at most once a second and stops the run when the job was taken away."""

    def __init__(self, store: Store, job_id: str, worker: str):
        self.store, self.job_id, self.worker = store, job_id, worker
        self.last = 0.0

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        if not self.store.report_progress(self.job_id, self.worker, min(99, int(100 * fraction))):
            raise JobAbandoned


def diarization_output(job: Job, path: Path, progress: ProgressReporter, asr_models: Path) -> tuple[dict, float]:
    """The pyannoteAI output for a diarize job, and the audio duration in seconds."""
    from diarist.pipeline import diarize
    from diarist.transcription import diarize_and_transcribe

    request = job.request

    def run(report: Callable[[float], None]) -> DiarizationResult:
        return diarize(
            path,
            num_speakers=request.get("numSpeakers"),
            min_speakers=request.get("minSpeakers"),
            max_speakers=request.get("maxSpeakers"),
            model=request["model"],
            progress=report,
        )

    transcript = None
    if request.get("transcription"):
        asr_model = (request.get("transcriptionConfig") or {}).get("model")
        result, transcript = diarize_and_transcribe(path, run, asr_model, asr_models, progress)
        result.warnings += transcript.transcript.warnings
    else:
        result = run(progress)
    output = result.to_dict(
        exclusive=request["exclusive"],
        confidence=request["confidence"],
        turn_level_confidence=request["turnLevelConfidence"],
    )
    if transcript is not None:
        output.update(transcript.to_dict())
    return output, result.duration


def run_job(job: Job, store: Store, config: RunnerConfig, worker: str) -> None:
    """Run a job this worker has claimed, and record how it ended. Never raises for a job's fault."""
    from diarist.audio import duration_seconds

    path: Path | None = None
    downloaded = False
    try:
        path, downloaded = fetch_input(job, config)
        duration = duration_seconds(path)
        if duration is not None and duration > config.max_duration_seconds:
            hours = config.max_duration_seconds / 3600
            raise InputError(f"the audio lasts {duration / 3600:.1f} h, over the {hours:g} h limit")
        if duration is not None:  # a URL's length is first known here: QuotaExceededError if it does not fit
            store.reserve_audio(job.id, duration)
        output, seconds = diarization_output(job, path, ProgressReporter(store, job.id, worker), config.asr_models)
        store.finish_job(job.id, worker, SUCCEEDED, output, audio_seconds=seconds)
    except JobAbandoned:
        log.info("job %s was canceled while running", job.id)
    except (AudioError, InputError, UrlRefused, FetchError) as e:
        store.finish_job(job.id, worker, FAILED, {"error": f"Could not load audio: {e}"})
    except DiaristError as e:  # e.g. the models are not installed on this worker
        log.error("job %s failed: %s", job.id, e)
        store.finish_job(job.id, worker, FAILED, {"error": str(e)})
    except Exception:
        log.exception("job %s failed", job.id)
        store.finish_job(job.id, worker, FAILED, {"error": "Internal error while processing the job."})
    finally:
        if downloaded and path is not None:
            path.unlink(missing_ok=True)
