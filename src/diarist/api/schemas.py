"""Request and response bodies, named and shaped as in the pyannoteAI API (camelCase on the wire).

`null` is accepted wherever a request field is optional and means "not given" (the official SDK
sends explicit nulls); unknown fields are ignored, as newer clients may send fields this server
does not know. Response fields marked optional are left out when absent, never sent as `null`.
"""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator

from diarist.jobs.kinds import KINDS
from diarist.jobs.media import MAX_MEDIA_URL, MEDIA_URL
from diarist.jobs.spec import DiarizeSpec, IdentifySpec, JobSpec, VoiceprintSpec, camel
from diarist.jobs.tables import STATUSES
from diarist.net import HTTP_URL_PATTERN
from diarist.vocabulary import (
    ASR_MODELS,
    DEFAULT_MODEL,
    DIARIZATION_MODELS,
    LINE_BREAKING_CHARACTERS,
    LIVE_LATENCY_RANGE,
    MAX_SPEAKERS,
    NAME_PATTERN,
)
from diarist.voiceprints import (
    BASE64_PATTERN,
    MAX_LABEL,
    MAX_VOICEPRINT_CHARS,
    MAX_VOICEPRINTS,
    label_problem,
)

AsrModel = Literal[ASR_MODELS]
JobStatus = Literal[STATUSES]
DiarizationModel = Literal[DIARIZATION_MODELS]
JobKindName = Literal[tuple(KINDS)]

MAX_URL_LENGTH = 2048  # longer than any real audio or webhook URL, short enough to store and log
# The server's own media:// check (jobs/media.py), anchored at both ends as JSON Schema needs.
MEDIA_URL_PATTERN = "^" + MEDIA_URL.pattern.removeprefix("^").removesuffix("$") + "$"
# The OpenAPI document states the rules the server checks itself (api/routes), so that a request the
# schema allows is not refused for its form: a job's input is an http(s) or a media:// URL.
INPUT_URL_RULE = {"anyOf": [{"pattern": HTTP_URL_PATTERN}, {"pattern": MEDIA_URL_PATTERN, "maxLength": MAX_MEDIA_URL}]}
# A label does not start with SPEAKER_ in any case (str.upper() makes the long s, U+017F, an S), and follows
# name_problem's rules.
LABEL_PATTERN = r"^(?![Ss\u017f][Pp][Ee][Aa][Kk][Ee][Rr]_)" + NAME_PATTERN.removeprefix("^")
JOB_ID_EXAMPLE = "3c8a89a5-dcc6-4edb-a75d-ffd64739674d"
VOICEPRINT_EXAMPLE = "RFZQASJjYW1wcGx1cy05MmYyOWI5NC93aW5kb3ctY2VudHJvaWQtMS4uLg=="  # how one starts, in whole groups
TIME_EXAMPLE = "2024-02-20T12:00:00.000Z"


def _number(value: Any) -> Any:
    """A JSON number, finite; not "2", not true (which pydantic would take as 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float | None):
        raise ValueError("must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _whole_number(value: Any) -> Any:
    """Speaker counts are JSON numbers; 2 and 2.0 are fine, 2.5, "2" and true are not."""
    value = _number(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


SpeakerCount = Annotated[Annotated[int, Field(ge=1, le=MAX_SPEAKERS)] | None, BeforeValidator(_whole_number)]
Flag = StrictBool | None


def _never_null(schema: dict[str, Any]) -> None:
    """Drop the `null` branch and the `null` default pydantic writes for an `X | None = None` field."""
    schema.pop("default", None)
    branches = [b for b in schema.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches


def absent(description: str, **kwargs: Any) -> Any:
    """A response field that is left out when it has no value: optional in the schema, never `null`."""
    return Field(None, description=description, json_schema_extra=_never_null, **kwargs)


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


def example(body: dict[str, Any]) -> ConfigDict:
    """The model config of a request body with this example in the OpenAPI document."""
    return ConfigDict(extra="ignore", json_schema_extra={"examples": [body]})


class TranscriptionConfig(ApiModel):
    model: AsrModel | None = Field(
        None,
        description="Speech recognition model. The reference's two names, plus the Whisper models that ship with "
        "diarist; a model the operator has not installed runs as whisper-base, with a warning.",
    )


class JobRequest(ApiModel):
    """What every job request has: the audio, the webhook and the model."""

    url: str = Field(
        max_length=MAX_URL_LENGTH,
        description="Where the audio is: a public, direct http(s) link to the file, or a media:// URL uploaded "
        "through /v1/media/input.",
        examples=["https://example.com/audio.wav", "media://meeting.wav"],
        json_schema_extra=INPUT_URL_RULE,
    )
    webhook: str | None = Field(
        None,
        max_length=MAX_URL_LENGTH,
        description="URL that receives the job by POST once it ends (optional).",
        examples=["https://example.com/webhook"],
        json_schema_extra={"pattern": HTTP_URL_PATTERN},
    )
    webhookStatusOnly: Flag = Field(
        False, description="When true, the webhook carries only jobId and status, not the output (for large outputs)."
    )
    model: DiarizationModel | None = Field(DEFAULT_MODEL, description="Diarization model.")

    spec: ClassVar[type[JobSpec]]

    def to_spec(self) -> JobSpec:
        """The job's typed spec: each field under its API name, nulls replaced by the spec's defaults."""
        values = {f.name: getattr(self, camel(f.name), None) for f in fields(self.spec)}
        values = {name: value for name, value in values.items() if value is not None}
        return self.spec(**values | self._nested())

    def _nested(self) -> dict[str, Any]:
        """Spec fields the request holds under another shape than their API name."""
        return {}


class SpeakerOptions(JobRequest):
    """The diarization options of diarize and identify."""

    numSpeakers: SpeakerCount = Field(
        None,
        description="Number of speakers, when known in advance; detected automatically otherwise. Same as "
        f"minSpeakers == maxSpeakers. When it cannot be honoured (short audio), the output has a warning. "
        f"At most {MAX_SPEAKERS}.",
    )
    minSpeakers: SpeakerCount = Field(None, description="Least number of speakers (at most maxSpeakers).")
    maxSpeakers: SpeakerCount = Field(None, description="Largest number of speakers (at least minSpeakers).")
    turnLevelConfidence: Flag = Field(False, description="Add per-turn confidence to every diarization turn.")
    exclusive: Flag = Field(
        False, description="Add exclusiveDiarization: the diarization with overlapping speech resolved to one speaker."
    )
    confidence: Flag = Field(
        False, description="Add confidence scores sampled at a fixed resolution (makes the output much larger)."
    )


class DiarizeRequest(SpeakerOptions):
    model_config = example(
        {
            "url": "https://example.com/audio.wav",
            "webhook": "https://example.com/webhook",
            "model": "precision-2",
            "numSpeakers": 2,
            "turnLevelConfidence": True,
            "exclusive": True,
            "confidence": True,
        }
    )

    transcription: Flag = Field(
        False, description="Add speaker-attributed transcription. Only with the precision-2 model."
    )
    transcriptionConfig: TranscriptionConfig | None = Field(
        None, description="Transcription settings, used when transcription is true."
    )
    spec: ClassVar[type[JobSpec]] = DiarizeSpec

    def _nested(self) -> dict[str, Any]:
        return {"asr_model": self.transcriptionConfig.model if self.transcriptionConfig else None}


class VoiceprintRequest(JobRequest):
    model_config = example({"url": "https://example.com/voice.wav", "model": "precision-2"})
    spec: ClassVar[type[JobSpec]] = VoiceprintSpec


class MatchingOptions(ApiModel):
    exclusive: Flag = Field(
        True, description="Prevent multiple speakers from being matched to the same voiceprint. Default true."
    )
    threshold: Annotated[float | None, BeforeValidator(_number)] = Field(
        0.0,
        ge=0,
        le=100,
        description="No match below this confidence (0-100). Default 0: every voiceprint is matched. Confidence is "
        "calibrated: from 50 on, more likely the same person than not.",
    )


class VoiceprintIn(ApiModel):
    label: str = Field(
        min_length=1,
        max_length=MAX_LABEL,
        description="Name of the speaker; must not start with SPEAKER_ (the diarization's own labels), be blank, "
        "or hold line breaks, tabs or other control characters.",
        examples=["John Doe"],
        json_schema_extra={"pattern": LABEL_PATTERN},
    )
    voiceprint: str = Field(
        max_length=MAX_VOICEPRINT_CHARS,
        description="A voiceprint made by POST /v1/voiceprint on this server.",
        json_schema_extra={"pattern": BASE64_PATTERN},
    )

    @field_validator("label")
    @classmethod
    def _not_a_speaker(cls, label: str) -> str:
        if problem := label_problem(label):
            raise ValueError(f"a label {problem}")
        return label


class IdentifyRequest(SpeakerOptions):
    model_config = example(
        {
            "url": "https://example.com/audio.wav",
            "webhook": "https://example.com/webhook",
            "model": "precision-2",
            "numSpeakers": 2,
            "matching": {"exclusive": True, "threshold": 0},
            "voiceprints": [{"label": "John Doe", "voiceprint": VOICEPRINT_EXAMPLE}],
        }
    )

    voiceprints: list[VoiceprintIn] = Field(
        min_length=1, max_length=MAX_VOICEPRINTS, description="The voiceprints to identify, 1 to 50, labels unique."
    )
    matching: MatchingOptions | None = Field(None, description="How voiceprints are matched with speakers.")
    transcription: Flag = Field(False, description="Not available with identification (as in pyannoteAI).")

    spec: ClassVar[type[JobSpec]] = IdentifySpec

    def _nested(self) -> dict[str, Any]:
        matching = self.matching or MatchingOptions()
        return {
            "voiceprints": tuple((item.label, item.voiceprint) for item in self.voiceprints),
            "exclusive_matching": matching.exclusive is not False,
            "threshold": matching.threshold or 0.0,
        }


class MediaRequest(ApiModel):
    url: str = Field(
        max_length=MAX_MEDIA_URL,
        description="media://object-key, where the object key is letters, digits and - _ . /. Object keys belong "
        "to the API key: another key's media://same-name is a different object.",
        examples=["media://meetings/2024-01-15/call.wav"],
        json_schema_extra={"pattern": MEDIA_URL_PATTERN},
    )


class MediaResponse(BaseModel):
    url: str = Field(description="Pre-signed URL, valid for a limited time; needs no API key.")


class TestResponse(BaseModel):
    status: str = Field(examples=["OK"])
    message: str = Field(examples=["Test connection successful"])


class JobCreated(BaseModel):
    jobId: str = Field(description="The job's id (a UUID).", examples=[JOB_ID_EXAMPLE])
    status: JobStatus = Field(examples=["created"])
    warning: str | None = absent("Warning about the request, if any")


class DiarizationSegment(BaseModel):
    speaker: str = Field(description="Speaker label", examples=["SPEAKER_00"])
    start: float = Field(description="Start of the turn, in seconds", examples=[10.0])
    end: float = Field(description="End of the turn, in seconds", examples=[15.0])
    confidence: dict[str, float] | None = absent(
        "Per-speaker score (0-100) that this turn is theirs; only with turnLevelConfidence",
        examples=[{"SPEAKER_00": 93, "SPEAKER_01": 16}],
    )


class Confidence(BaseModel):
    score: list[float] = Field(description="One score (0-100) per sample", examples=[[95, 89, 78, 67]])
    resolution: float = Field(description="Seconds per sample", examples=[0.02])


class TranscriptionSegment(BaseModel):
    start: float = Field(description="Start, in seconds", examples=[0.5])
    end: float = Field(description="End, in seconds", examples=[2.3])
    text: str = Field(description="What was said", examples=["Hello, how are you?"])
    speaker: str = Field(description="Speaker label", examples=["SPEAKER_00"])


class TalkTime(BaseModel):
    speaker: str = Field(description="Speaker label", examples=["SPEAKER_00"])
    seconds: float = Field(description="Seconds the speaker talks, overlapping speech included", examples=[42.5])


TALK_TIME = "Each speaker's talk time, most talkative first (diarist's own field; pyannoteAI has none)"


class DiarizationJobOutput(BaseModel):
    """The output of a succeeded diarization job."""

    diarization: list[DiarizationSegment] = Field(description="Speaker turns; they may overlap")
    exclusiveDiarization: list[DiarizationSegment] | None = absent(
        "Turns where only one speaker is active at a time; only with exclusive"
    )
    confidence: Confidence | None = absent("Confidence scores; only with confidence")
    wordLevelTranscription: list[TranscriptionSegment] | None = absent("Words with speakers; only with transcription")
    turnLevelTranscription: list[TranscriptionSegment] | None = absent(
        "Speaker turns with their text; only with transcription"
    )
    talkTime: list[TalkTime] | None = absent(TALK_TIME)
    warning: str | None = absent("Warning about the result, if any")


class IdentificationSegment(BaseModel):
    speaker: str
    start: float
    end: float
    confidence: dict[str, float] | None = absent("Per-speaker score (0-100); only with turnLevelConfidence")
    diarizationSpeaker: str = Field(examples=["SPEAKER_00"])
    match: str | None = Field(description="Label of the matched voiceprint, or null", examples=["Sam"])


class IdentificationVoiceprint(BaseModel):
    speaker: str = Field(examples=["SPEAKER_00"])
    match: str | None = Field(examples=["Sam"])
    confidence: dict[str, float] = Field(examples=[{"Sam": 16, "Rick": 24}])


class IdentificationJobOutput(BaseModel):
    """The output of a succeeded identification job."""

    diarization: list[DiarizationSegment] | None = absent("Speaker turns")
    exclusiveDiarization: list[DiarizationSegment] | None = absent("Turns with one speaker at a time")
    confidence: Confidence | None = absent("Confidence scores")
    identification: list[IdentificationSegment] | None = absent("Turns with their matched voiceprint")
    voiceprints: list[IdentificationVoiceprint] | None = absent("Match of each diarization speaker")
    talkTime: list[TalkTime] | None = absent(TALK_TIME)
    warning: str | None = absent("Warning, if any")


class VoiceprintJobOutput(BaseModel):
    """The output of a succeeded voiceprint job."""

    voiceprint: str = Field(description="The voiceprint, for identification; opaque, versioned")
    warning: str | None = absent("Warning about the audio, if any")


class JobError(BaseModel):
    """The output of a failed or canceled job."""

    error: str = Field(description="What went wrong, in the user's terms", examples=["Could not load audio: ..."])


class JobOut(BaseModel):
    jobId: str = Field(examples=[JOB_ID_EXAMPLE])
    status: JobStatus
    createdAt: datetime = Field(description="When the job was created (UTC)", examples=[TIME_EXAMPLE])
    updatedAt: datetime = Field(description="When the job last changed (UTC)", examples=[TIME_EXAMPLE])
    progress: int | None = absent("0-100 while running (a diarist extension)", ge=0, le=100)
    output: DiarizationJobOutput | IdentificationJobOutput | VoiceprintJobOutput | JobError | None = absent(
        "The result once succeeded, {error} once failed or canceled; kept for a limited time after the job ends"
    )
    kind: JobKindName | None = absent("The job's type (a diarist extension, with `details=true` only)")
    url: str | None = absent("The job's input URL, credentials hidden (a diarist extension, with `details=true` only)")
    attempt: int | None = absent(
        "Which run of the job this is, 1 for the first, once a worker has taken it: a job whose worker died runs "
        "again from the start (a diarist extension, with `details=true` only)",
        ge=1,
    )


MAX_SPEAKER_NAME = 100


class Peaks(BaseModel):
    """A job's waveform overview (a diarist extension, for the web page)."""

    duration: float = Field(description="Seconds of decoded audio", examples=[1800.0])
    rate: float = Field(description="Values per second: 50, or less for files over 2000 s", examples=[50.0])
    peaks: list[Annotated[int, Field(ge=0, le=127)]] = Field(
        description="The largest |sample| of each 1/rate s, scaled to 0..127 (draw it mirrored)"
    )


SPEAKER_NAMES_EXAMPLE = {"SPEAKER_00": "Alice", "SPEAKER_01": "Bob"}
SpeakerNames = Annotated[
    dict[str, str],
    Field(description="Name of each named speaker id of the job's output", examples=[SPEAKER_NAMES_EXAMPLE]),
]
SpeakerRenames = Annotated[
    dict[
        str,
        Annotated[
            str, Field(max_length=MAX_SPEAKER_NAME, json_schema_extra={"pattern": f"^[^{LINE_BREAKING_CHARACTERS}]*$"})
        ]
        | None,
    ],
    Field(
        description=f"A name (1 to {MAX_SPEAKER_NAME} characters) for speaker ids of the job's output; null or "
        '"" removes one. Speakers left out keep theirs.',
        examples=[{"SPEAKER_00": "Alice", "SPEAKER_01": None}],
    ),
]


class JobListItem(BaseModel):
    id: str = Field(examples=[JOB_ID_EXAMPLE])
    status: JobStatus
    createdAt: datetime = Field(examples=[TIME_EXAMPLE])


class JobListV2(BaseModel):
    items: list[JobListItem] = Field(description="Jobs, newest first, without their output")
    nextCursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")


class JobListV1(BaseModel):
    items: list[JobListItem] = Field(description="Jobs, newest first, without their output")
    total: int = Field(description="Number of jobs matching the status filter")


class FieldError(BaseModel):
    field: str = Field(examples=["url"])
    message: str = Field(examples=["Invalid URL"])


class ValidationErrorResponse(BaseModel):
    message: str = Field(examples=["Invalid request"])
    errors: list[FieldError]
    requestId: str | None = absent("The request's id, also in the X-Request-Id header")


class ApiError(BaseModel):
    requestId: str = Field(examples=["37a4c3a0-b034-4e8c-9ed9-76da6645544a"])
    message: str = Field(examples=["Error message"])


class CreateStream(ApiModel):
    """pyannoteAI's body is `{}`; the two fields are diarist's own, both optional."""

    model_config = example({})
    model: DiarizationModel | None = Field(
        None, description="diarist: the diarization model of the stream (default: community-1, the lighter)"
    )
    latency: float | None = Field(
        None,
        ge=LIVE_LATENCY_RANGE[0],
        le=LIVE_LATENCY_RANGE[1],
        description="diarist: seconds between the audio and its events; longer is more accurate (default: the "
        "server's)",
    )

    keepAudio: Flag = Field(
        False,
        description="diarist: keep the stream's audio (as media://live-<id>.wav) and, when it ends, diarize it "
        "offline as an ordinary job with the same model (default precision-2): live events during the "
        "meeting, the best diarization after it. The stream's record names the job (jobId).",
    )
    webhook: str | None = Field(
        None,
        max_length=MAX_URL_LENGTH,
        description="diarist: with keepAudio, the offline job's webhook, as for POST /v1/diarize",
        json_schema_extra={"pattern": HTTP_URL_PATTERN},
    )


class StreamCreated(BaseModel):
    id: str = Field(description="The stream's id (a UUID).", examples=[JOB_ID_EXAMPLE])
    url: str = Field(
        description="The WebSocket URL to send the audio to, with its single-use token; it must be opened within "
        "a minute.",
        examples=["wss://diarist.example.com/v1/live/3c8a89d4-3d27-4d5c-8ac0-9f8e4a8d5b1e/socket?token=..."],
    )


class Stream(BaseModel):
    id: str = Field(description="The stream's id (a UUID).", examples=[JOB_ID_EXAMPLE])
    status: Literal["created", "running", "done", "error"]
    startedAt: datetime | None = Field(description="When its socket opened")
    completedAt: datetime | None = Field(description="When it ended")
    input: dict[str, Any] = Field(default_factory=dict)
    jobId: str | None = absent("diarist: the offline diarization of the kept audio (keepAudio), once the stream ended")
