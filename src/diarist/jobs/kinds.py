"""The job kinds, each in one place: its spec, its input limits, how it runs and what its output holds.

The API's routes and request schemas, the runner, the Celery routing, the exports and the web page
read this registry; adding a kind starts here (docs/architecture.md lists the rest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diarist.audio import Peaks
from diarist.exports import FORMATS
from diarist.hooks import Hook
from diarist.jobs.spec import DiarizeSpec, IdentifySpec, JobSpec, VoiceprintSpec
from diarist.jobs.tables import Job
from diarist.service import diarize, identify, voiceprint
from diarist.voiceprints import MAX_BYTES as VOICEPRINT_MAX_BYTES
from diarist.voiceprints import MAX_SECONDS as VOICEPRINT_MAX_SECONDS

if TYPE_CHECKING:  # the API imports the registry, and must not import PyTorch
    from diarist.engine import Engine


@dataclass(frozen=True)
class Outcome:
    """What a run gives the runner: the job's output, the seconds of audio it took, the waveform overview."""

    output: dict[str, Any]
    audio_seconds: float
    peaks: Peaks | None = None


# A kind's use case: the process's engine, its spec, the local audio file, the operator's ASR model
# folder and the hook that hears its steps.
UseCase = Callable[["Engine", Any, Path, Path | None, Hook], Outcome]


@dataclass(frozen=True)
class JobKind:
    """A kind of job: what the API takes for it and what a worker does with it."""

    spec: type[JobSpec]
    run: UseCase
    has_speakers: bool  # turns to name, peaks, subtitles: diarize and identify
    max_input_bytes: int | None = None  # tighter than the server's own limits, or None
    max_input_seconds: float | None = None

    @property
    def name(self) -> str:
        return self.spec.kind

    @property
    def export_formats(self) -> tuple[str, ...]:
        """The files `GET /v1/jobs/{id}/export` makes of its output: every format for turns, else json."""
        return tuple(FORMATS) if self.has_speakers else ("json",)


def _diarize(engine: Engine, spec: DiarizeSpec, path: Path, asr_models: Path | None, hook: Hook) -> Outcome:
    done = diarize(engine, spec.options(asr_models), path, hook)
    return Outcome(done.output, done.result.duration, done.result.peaks)


def _identify(engine: Engine, spec: IdentifySpec, path: Path, asr_models: Path | None, hook: Hook) -> Outcome:
    done = identify(engine, spec.options(asr_models), path, hook)
    return Outcome(done.output, done.result.duration, done.result.peaks)


def _voiceprint(engine: Engine, spec: VoiceprintSpec, path: Path, asr_models: Path | None, hook: Hook) -> Outcome:
    made = voiceprint(engine, path, spec.model, hook)
    return Outcome(made.to_dict(), made.duration)


DIARIZE = JobKind(DiarizeSpec, _diarize, has_speakers=True)
VOICEPRINT = JobKind(
    VoiceprintSpec,
    _voiceprint,
    has_speakers=False,
    max_input_bytes=VOICEPRINT_MAX_BYTES,
    max_input_seconds=VOICEPRINT_MAX_SECONDS,
)
IDENTIFY = JobKind(IdentifySpec, _identify, has_speakers=True)
KINDS: dict[str, JobKind] = {kind.name: kind for kind in (DIARIZE, VOICEPRINT, IDENTIFY)}


def spec_of(job: Job) -> JobSpec:
    """The typed request of a stored job."""
    return KINDS[job.kind].spec.from_json(job.request)
