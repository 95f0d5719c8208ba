"""Run one claimed job: input -> audio -> pipeline -> output, recorded in the store.

The same code runs a job for a local worker process and for a Celery task. While it runs, a
`Lease` thread refreshes the job's lease; every write carries the run's fencing token (the
job's attempt number), so a run whose job was canceled or given to another worker writes nothing,
and stops at its next progress report.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from diarist.errors import (
    AudioError,
    AudioFileNotFoundError,
    CorruptAudioError,
    DiaristError,
    EmptyAudioFileError,
    ModelNotInstalledError,
    NotAudioError,
    ZeroLengthAudioError,
)
from diarist.jobs.media import MediaStore, object_key
from diarist.jobs.net import FetchError, NetPolicy, UrlRefused, download, redact_url
from diarist.jobs.store import QuotaExceededError, Store
from diarist.jobs.tables import FAILED, SUCCEEDED, Job
from diarist.service import AudioTooLongError, DiarizeOptions, diarize, probe

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


def fetch_input(job: Job, config: RunnerConfig, progress: ProgressReporter) -> tuple[Path, bool]:
    """The local file holding the job's audio, and whether it is a download to delete afterwards.

    A download reports progress 0 as bytes arrive: that is when a cancel is noticed (JobAbandoned), so a server
    that trickles bytes cannot keep the worker from other jobs.
    """
    url = job.request["url"]
    if url.startswith("media://"):
        path = config.media.path(job.key_id, object_key(url))
        if not path.exists():
            raise InputError("it does not exist (uploads are deleted after a while)")
        return path, False
    config.downloads.mkdir(parents=True, exist_ok=True)
    dest = config.downloads / job.id
    download(url, dest, config.policy, config.max_input_bytes, on_bytes=lambda _count: progress(0.0))
    return dest, True


class Lease:
    """Refreshes a claimed job's lease every `interval` seconds from a thread, whatever the run is doing.

    A model step may run for hours without reporting progress; the lease must not expire meanwhile.
    When the job is no longer this run's (canceled, or re-queued and claimed again), `lost` is set
    and the run stops at its next progress report. A database error is only logged: if it lasts
    past the lease, the reaper re-queues the job and the next heartbeat that gets through learns it.
    """

    def __init__(self, store: Store, job_id: str, token: int, interval: float):
        self.store, self.job_id, self.token, self.interval = store, job_id, token, interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.store.heartbeat(self.job_id, self.token):
                    log.info("job %s (attempt %d) is no longer this worker's: stopping it", self.job_id, self.token)
                    self.lost.set()
                    return
            except DiaristError as e:
                log.warning("lease of job %s not refreshed: %s", self.job_id, e)


class ProgressReporter:
    """Writes progress at most once a second and stops the run when the job was taken away."""

    def __init__(self, store: Store, job_id: str, token: int, lease: Lease | None = None):
        self.store, self.job_id, self.token, self.lease = store, job_id, token, lease
        self.last = 0.0

    def __call__(self, fraction: float) -> None:
        if self.lease is not None and self.lease.lost.is_set():  # no database round trip: checked every call
            raise JobAbandoned
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        if not self.store.report_progress(self.job_id, self.token, min(99, int(100 * fraction))):
            raise JobAbandoned


def diarize_options(job: Job, asr_models: Path) -> DiarizeOptions:
    """The use-case options a diarize job's request asks for."""
    request = job.request
    return DiarizeOptions(
        model=request["model"],
        num_speakers=request.get("numSpeakers"),
        min_speakers=request.get("minSpeakers"),
        max_speakers=request.get("maxSpeakers"),
        exclusive=request["exclusive"],
        confidence=request["confidence"],
        turn_level_confidence=request["turnLevelConfidence"],
        transcription=bool(request.get("transcription")),
        asr_model=(request.get("transcriptionConfig") or {}).get("model"),
        asr_models_dir=asr_models,
    )


# What went wrong with a job's audio, in the user's terms: the exception's own text names the
# file on the server's disk, which is none of the user's business (it goes to the log).
AUDIO_PROBLEMS: tuple[tuple[type[AudioError], str], ...] = (
    (EmptyAudioFileError, "the file is empty (0 bytes)"),
    (NotAudioError, "it is not audio that can be decoded (corrupt or unsupported format, or no audio track)"),
    (CorruptAudioError, "its audio data is corrupt"),
    (ZeroLengthAudioError, "its audio track holds no samples"),
    (AudioFileNotFoundError, "the file is no longer there"),
)


def input_error_message(url: str, error: DiaristError) -> str:
    """The job's `output.error` for an input that could not be fetched or decoded."""
    if isinstance(error, AudioError) and not isinstance(error, AudioTooLongError):
        reason = next((text for kind, text in AUDIO_PROBLEMS if isinstance(error, kind)), "it could not be decoded")
    else:  # these messages are written for the user and name no server path
        reason = str(error).rstrip(".")
    return f"Could not load audio from {redact_url(url)}: {reason}."


def run_job(job: Job, store: Store, config: RunnerConfig, heartbeat_seconds: float) -> None:
    """Run a job this worker has claimed, and record how it ended. Never raises for a job's fault.

    `job.attempts` is the run's fencing token; the job's lease is refreshed every `heartbeat_seconds`.
    """
    token = job.attempts
    path: Path | None = None
    downloaded = False

    def finish(status: str, output: dict, audio_seconds: float | None = None) -> None:
        if store.finish_job(job.id, token, status, output, audio_seconds=audio_seconds) is None:
            log.warning(
                "job %s: the end of attempt %d was refused: the job was canceled, or re-queued after this "
                "worker's lease expired and run again",
                job.id,
                token,
            )

    with Lease(store, job.id, token, heartbeat_seconds) as lease:
        try:
            progress = ProgressReporter(store, job.id, token, lease)
            path, downloaded = fetch_input(job, config, progress)
            # A URL's length, or an upload's whose container announced none, is first known here:
            # QuotaExceededError if it does not fit.
            store.reserve_audio(job.id, token, probe(path, config.max_duration_seconds))
            done = diarize(diarize_options(job, config.asr_models), path, progress)
            finish(SUCCEEDED, done.output, audio_seconds=done.result.duration)
        except JobAbandoned:
            log.info("job %s (attempt %d) was canceled or taken over while running", job.id, token)
        except (AudioError, InputError, UrlRefused, FetchError) as e:
            log.info("job %s: could not load its audio: %s", job.id, e)
            finish(FAILED, {"error": input_error_message(job.request["url"], e)})
        except QuotaExceededError as e:  # its message speaks of the user's own quota, nothing of the server
            finish(FAILED, {"error": str(e)})
        except ModelNotInstalledError as e:
            log.error("job %s failed: %s", job.id, e)
            message = "The server cannot run this job: a model it needs is not installed (its log says which)."
            finish(FAILED, {"error": message})
        except DiaristError as e:
            log.error("job %s failed: %s", job.id, e)
            finish(FAILED, {"error": "The server could not run this job (its log says why)."})
        except Exception:
            log.exception("job %s failed", job.id)
            finish(FAILED, {"error": "Internal error while processing the job."})
        finally:
            if downloaded and path is not None:
                path.unlink(missing_ok=True)
