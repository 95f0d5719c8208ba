"""What a job asks for, typed: written by the API at submit, stored with the job, read by the worker.

The stored form is the request as the API names it (camelCase, every field present), so a job
queued by an older server still reads. `kinds.spec_of(job)` reads a stored job's spec back, and
the spec turns itself into the use case's options.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

from diarist.service import DiarizeOptions, IdentifyOptions
from diarist.vocabulary import DEFAULT_MODEL
from diarist.voiceprints import Matching, VoiceprintError, decode

DIARIZATION_QUEUE, TRANSCRIPTION_QUEUE = "diarization", "transcription"
QUEUES = (DIARIZATION_QUEUE, TRANSCRIPTION_QUEUE)


def camel(name: str) -> str:
    """`turn_level_confidence` -> `turnLevelConfidence`: the API's name of a spec field."""
    first, *rest = name.split("_")
    return first + "".join(word.title() for word in rest)


@dataclass(frozen=True)
class StoredRequest:
    """A request stored as the API names it (`camel(name): value`), read back field by field."""

    # Fields stored under another shape than `camel(name): value`, read and written by the subclass.
    _NESTED: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        """The stored request."""
        return {camel(f.name): getattr(self, f.name) for f in fields(self) if f.name not in self._NESTED}

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> Self:
        """The spec of a stored request; a field it lacks takes its default."""
        return cls(**cls._read(stored))

    @classmethod
    def _read(cls, stored: dict[str, Any]) -> dict[str, Any]:
        values = {}
        for f in fields(cls):
            if f.name not in cls._NESTED and stored.get(camel(f.name)) is not None:
                values[f.name] = stored[camel(f.name)]
        return values


@dataclass(frozen=True)
class JobSpec(StoredRequest):
    """What every job has: its audio, where to report its end, and the model."""

    kind: ClassVar[str]
    url: str
    webhook: str | None = None
    webhook_status_only: bool = False
    model: str = DEFAULT_MODEL

    def changed_options(self) -> dict[str, Any]:
        """The request's options that differ from their defaults, as the API names them; not the audio, the
        webhook, the model or the voiceprints (long strings, secret to the key)."""
        defaults = type(self)(url=self.url).to_json()
        hidden = {"url", "webhook", "webhookStatusOnly", "model", "voiceprints"}
        return {k: v for k, v in self.to_json().items() if k not in hidden and v != defaults[k]}

    @property
    def queue(self) -> str:
        """The worker queue that runs it (a GPU box may take only transcription)."""
        return DIARIZATION_QUEUE


@dataclass(frozen=True)
class VoiceprintSpec(JobSpec):
    kind: ClassVar[str] = "voiceprint"


@dataclass(frozen=True)
class DiarizeSpec(JobSpec):
    kind: ClassVar[str] = "diarize"
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    exclusive: bool = False
    confidence: bool = False
    turn_level_confidence: bool = False
    transcription: bool = False
    asr_model: str | None = None  # None: the default recognizer

    _NESTED: ClassVar[tuple[str, ...]] = ("asr_model",)

    def to_json(self) -> dict[str, Any]:
        return super().to_json() | {"transcriptionConfig": {"model": self.asr_model} if self.asr_model else None}

    @classmethod
    def _read(cls, stored: dict[str, Any]) -> dict[str, Any]:
        return super()._read(stored) | {"asr_model": (stored.get("transcriptionConfig") or {}).get("model")}

    @property
    def queue(self) -> str:
        return TRANSCRIPTION_QUEUE if self.transcription else DIARIZATION_QUEUE

    def options(self, asr_models_dir: Path | None = None) -> DiarizeOptions:
        """The use case's options; `asr_models_dir`: where the operator installs ASR models."""
        return DiarizeOptions(
            model=self.model,
            num_speakers=self.num_speakers,
            min_speakers=self.min_speakers,
            max_speakers=self.max_speakers,
            exclusive=self.exclusive,
            confidence=self.confidence,
            turn_level_confidence=self.turn_level_confidence,
            transcription=self.transcription,
            asr_model=self.asr_model,
            asr_models_dir=asr_models_dir,
        )


@dataclass(frozen=True)
class IdentifySpec(DiarizeSpec):
    kind: ClassVar[str] = "identify"
    voiceprints: tuple[tuple[str, str], ...] = ()  # (label, voiceprint string), as given
    exclusive_matching: bool = True
    threshold: float = 0.0

    _NESTED: ClassVar[tuple[str, ...]] = ("asr_model", "voiceprints", "exclusive_matching", "threshold")

    def to_json(self) -> dict[str, Any]:
        return super().to_json() | {
            "voiceprints": [{"label": label, "voiceprint": print_} for label, print_ in self.voiceprints],
            "matching": {"exclusive": self.exclusive_matching, "threshold": self.threshold},
        }

    @classmethod
    def _read(cls, stored: dict[str, Any]) -> dict[str, Any]:
        matching = stored.get("matching") or {}
        return super()._read(stored) | {
            "voiceprints": tuple((item["label"], item["voiceprint"]) for item in stored.get("voiceprints") or ()),
            "exclusive_matching": matching.get("exclusive", True),
            "threshold": matching.get("threshold", 0.0),
        }

    def options(self, asr_models_dir: Path | None = None) -> IdentifyOptions:
        """The diarize options plus the decoded voiceprints; VoiceprintError naming one that no longer decodes."""
        voiceprints = {}
        for label, text in self.voiceprints:
            try:
                voiceprints[label] = decode(text)
            except VoiceprintError as e:  # checked at submit; the server's voice model may have changed since
                raise VoiceprintError(f"The voiceprint of {label!r} {e}.") from None
        matching = Matching(self.exclusive_matching, self.threshold)
        return IdentifyOptions(**vars(super().options(asr_models_dir)), voiceprints=voiceprints, matching=matching)


@dataclass(frozen=True)
class LiveSpec(StoredRequest):
    """What a live stream asks for (`POST /v1/live`): stored with the stream, read when its socket opens.

    A stream is not a queued job: the replica holding its WebSocket runs it (`jobs/live.py`), so it
    has no entry in `kinds.KINDS`. Its kept audio becomes an ordinary diarize job (`recording_spec`).
    """

    kind: ClassVar[str] = "live"
    model: str | None = None  # None: the live engine's default
    latency: float | None = None  # None: the server's
    keep_audio: bool = False
    webhook: str | None = None  # the kept audio's job's

    def recording_spec(self, url: str) -> DiarizeSpec:
        """The offline job of the stream's kept audio at `url`: the same model, this webhook."""
        return DiarizeSpec(url=url, model=self.model or DEFAULT_MODEL, webhook=self.webhook)
