"""Run one claimed job: input -> audio -> pipeline -> output, recorded in the store.

The same code runs a job for a local worker process and for a Celery task. While it runs, a
`Lease` thread refreshes the job's lease; every write carries the run's fencing token (the
job's attempt number), so a run whose job was canceled or given to another worker writes nothing,
and stops at its next progress report.

A `media://` input is read from this machine's media folder when the upload landed here (the
embedded default: the server and its workers share one data dir). Otherwise the worker fetches it
from the API replica that received it (`Media.origin`, that replica's `internal_url`) with a signed
download URL good for a minute, into its own downloads folder: no disk is shared between machines.
When that replica does not answer (it is restarting, as in a rolling upgrade), the job goes back to
the queue for a later attempt (`Store.retry_job`), and fails only after `origin_retries` of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from diarist.audio import Peaks
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
from diarist.hooks import Fraction
from diarist.jobs.kinds import KINDS, JobKind, spec_of
from diarist.jobs.media import MediaStore, make_token, object_key
from diarist.jobs.store import QuotaExceededError, Store
from diarist.jobs.tables import FAILED, SUCCEEDED, Job
from diarist.net import FetchError, NetPolicy, TooLargeError, UrlRefused, download, redact_url
from diarist.service import AudioTooLongError, probe
from diarist.voiceprints import VoiceprintError

if TYPE_CHECKING:
    from diarist.engine import Engine

log = logging.getLogger("diarist.jobs")
PROGRESS_INTERVAL = 1.0  # seconds between progress writes
ORIGIN_TOKEN_SECONDS = 60  # a worker's download URL for an upload on another replica: it is used at once
MISSING_UPLOAD = "it does not exist (uploads are deleted after a while)"
ORIGIN_FAILED = "the server that received the upload could not pass it on (the worker's log says why)"
RETRY_FIRST_SECONDS = 5.0  # the pause before a job whose upload's server did not answer is claimable again
RETRY_MAX_SECONDS = 300.0  # it doubles with each retry up to this


class JobAbandoned(Exception):
    """The job was canceled or given to another worker while this one ran it."""


class InputError(DiaristError):
    """The job's input could not be turned into a local audio file."""


class OriginUnavailable(InputError):
    """The API replica holding the job's upload did not answer, or answered with a server error: it
    may be restarting, so the job is tried again later."""


def retry_delay(retries: int) -> float:
    """Seconds before a job that already had `retries` retries is claimable again: 5, 10, 20 … up to 300."""
    return min(RETRY_FIRST_SECONDS * 2**retries, RETRY_MAX_SECONDS)


@dataclass(frozen=True)
class RunnerConfig:
    """What a worker needs to know to run jobs; built from the service settings."""

    media: MediaStore
    downloads: Path
    policy: NetPolicy
    max_input_bytes: int
    max_duration_seconds: float
    asr_models: Path  # where an operator installs the transcription models that are not packaged
    secret: bytes = b""  # signs the URLs that fetch uploads from the replica holding them
    origin_retries: int = 0  # times a job goes back to the queue when that replica does not answer


def origin_policy(policy: NetPolicy, origin: str) -> NetPolicy:
    """The fetch policy for an upload held by the API replica at `origin`.

    That replica's host may be private or loopback: the address comes from the database, where the
    operator's own replica wrote it, never from a user. Only this fetch gets the exception (user URLs
    keep `policy`), and it follows no redirect, so it cannot be led anywhere else.
    """
    host = urlsplit(origin).hostname or ""
    return replace(policy, allowed_hosts=(*policy.allowed_hosts, host), max_redirects=0)


def fetch_upload(
    origin: str, key_id: str, key: str, dest: Path, config: RunnerConfig, on_bytes: Callable[[int], None]
) -> None:
    """Download `media://<key>` of API key `key_id` from the replica at `origin` to `dest`; `on_bytes`
    hears the bytes so far, and may raise to stop.

    InputError in the user's terms (a missing upload reads as it always did), OriginUnavailable when
    the replica may answer later; the details, which name internal addresses, go to the log.
    """
    token = make_token(config.secret, "get", key_id, key, ORIGIN_TOKEN_SECONDS)
    url = f"{origin}/v1/media/download/{token}"
    policy = origin_policy(config.policy, origin)
    try:
        download(url, dest, policy, config.max_input_bytes, on_bytes=on_bytes)
    except TooLargeError:  # over max_input_bytes: said as for a URL
        raise
    except FetchError as e:
        if e.status == 404:
            raise InputError(MISSING_UPLOAD) from None
        log.warning("could not fetch media://%s of key %s from %s: %s", key, key_id, origin, e)
        if e.status is None or e.status >= 500:  # no answer, or a server error: not the upload's fault
            raise OriginUnavailable(ORIGIN_FAILED) from e
        raise InputError(ORIGIN_FAILED) from e
    except UrlRefused as e:
        log.error("the upload origin %s is refused (%s): is its internal_url right?", origin, e)
        raise InputError(ORIGIN_FAILED) from e


def fetch_input(
    job: Job, url: str, config: RunnerConfig, progress: ProgressReporter, store: Store
) -> tuple[Path, bool]:
    """The local file holding the job's audio at `url`, and whether it is a download to delete afterwards.

    A download reports its bytes as they arrive: that is when a cancel is noticed (JobAbandoned), so a server
    that trickles bytes cannot keep the worker from other jobs.
    """
    config.downloads.mkdir(parents=True, exist_ok=True)
    dest = config.downloads / job.id
    if url.startswith("media://"):
        key = object_key(url)
        path = config.media.path(job.key_id, key)
        if path.exists():
            return path, False
        media = store.get_media(job.key_id, key)
        if media is None or media.origin is None:
            raise InputError(MISSING_UPLOAD)
        fetch_upload(media.origin, job.key_id, key, dest, config, progress.downloaded)
        return dest, True
    download(url, dest, config.policy, config.max_input_bytes, on_bytes=progress.downloaded)
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
    """A listener to the run's steps (hooks.py) that writes the job's progress (0-99) at most once a
    second, and stops the run when the job was taken away.

    Every step's call is a chance to stop, the download's bytes included; the progress is the
    run's fraction done (`hooks.Fraction`), which never goes back.
    """

    def __init__(self, store: Store, job_id: str, token: int, lease: Lease | None = None):
        self.store, self.job_id, self.token, self.lease = store, job_id, token, lease
        self.last = 0.0
        self.fraction = 0.0
        self.overall = Fraction(self._advance)

    def _advance(self, fraction: float) -> None:
        self.fraction = fraction

    def downloaded(self, count: int) -> None:
        """The input's download has `count` bytes so far."""
        self("download", completed=count)

    def __call__(
        self, step: str, artifact: Any = None, *, completed: int | None = None, total: int | None = None
    ) -> None:
        if self.lease is not None and self.lease.lost.is_set():  # no database round trip: checked every call
            raise JobAbandoned
        self.overall(step, artifact, completed=completed, total=total)
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        if not self.store.report_progress(self.job_id, self.token, min(99, int(100 * self.fraction))):
            raise JobAbandoned


def job_limits(kind: JobKind, config: RunnerConfig) -> RunnerConfig:
    """`config` with the input limits of the job's kind: a voiceprint takes a short file."""
    return replace(
        config,
        max_input_bytes=min(config.max_input_bytes, kind.max_input_bytes or config.max_input_bytes),
        max_duration_seconds=min(config.max_duration_seconds, kind.max_input_seconds or config.max_duration_seconds),
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


def end_message(job_id: str, attempt: int, status: str, seconds: float, audio_seconds: float | None) -> str:
    """The log line of a job's end: how it ended, how long the attempt took and, with audio, its real-time factor."""
    message = f"job {job_id} {status} after {seconds:.1f} s (attempt {attempt})"
    if audio_seconds:
        message += f": {audio_seconds:.1f} s of audio, real-time factor {seconds / audio_seconds:.3f}"
    return message


def run_job(job: Job, store: Store, config: RunnerConfig, heartbeat_seconds: float, engine: Engine) -> None:
    """Run a job this worker has claimed on the worker's `engine`, and record how it ended. Never
    raises for a job's fault.

    `job.attempts` is the run's fencing token; the job's lease is refreshed every `heartbeat_seconds`.
    """
    token = job.attempts
    kind = KINDS[job.kind]
    spec = spec_of(job)
    config = job_limits(kind, config)
    path: Path | None = None
    downloaded = False

    started = time.monotonic()

    def finish(status: str, output: dict, audio_seconds: float | None = None, peaks: Peaks | None = None) -> None:
        if store.finish_job(job.id, token, status, output, audio_seconds=audio_seconds, peaks=peaks) is None:
            log.warning(
                "job %s: the end of attempt %d was refused: the job was canceled, or re-queued after this "
                "worker's lease expired and run again",
                job.id,
                token,
            )
            return
        log.info("%s", end_message(job.id, token, status, time.monotonic() - started, audio_seconds))

    with Lease(store, job.id, token, heartbeat_seconds) as lease:
        try:
            progress = ProgressReporter(store, job.id, token, lease)
            path, downloaded = fetch_input(job, spec.url, config, progress, store)
            # A URL's length, or an upload's whose container announced none, is first known here:
            # QuotaExceededError if it does not fit.
            store.reserve_audio(job.id, token, probe(path, config.max_duration_seconds))
            outcome = kind.run(engine, spec, path, config.asr_models, progress)
            finish(SUCCEEDED, outcome.output, audio_seconds=outcome.audio_seconds, peaks=outcome.peaks)
        except JobAbandoned:
            log.info("job %s (attempt %d) was canceled or taken over while running", job.id, token)
        except OriginUnavailable as e:
            delay = retry_delay(job.retries)
            if store.retry_job(job.id, token, delay, config.origin_retries):
                log.warning("job %s: its upload's server did not answer: queued again, in %g s", job.id, delay)
            else:
                finish(FAILED, {"error": input_error_message(spec.url, e)})
        except (AudioError, InputError, UrlRefused, FetchError) as e:
            log.info("job %s: could not load its audio: %s", job.id, e)
            finish(FAILED, {"error": input_error_message(spec.url, e)})
        except VoiceprintError as e:  # too little speech for a voiceprint, or one that no longer decodes
            finish(FAILED, {"error": str(e)})
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
