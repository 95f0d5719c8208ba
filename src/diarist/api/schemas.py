"""Request and response bodies, named and shaped as in the pyannoteAI API (camelCase on the wire).

`null` is accepted wherever a field is optional and means "not given" (the official SDK sends
explicit nulls); unknown fields are ignored, as newer clients may send fields this server
does not know.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

AsrModel = Literal["parakeet-tdt-0.6b-v3", "faster-whisper-large-v3-turbo", "whisper-base", "whisper-tiny.en"]
JobStatus = Literal["pending", "created", "succeeded", "canceled", "failed", "running"]


def _whole_number(value: Any) -> Any:
    """Speaker counts are JSON numbers; 2 and 2.0 are fine, 2.5, "2" and true are not."""
    if isinstance(value, bool) or not isinstance(value, int | float | None):
        raise ValueError("must be a number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


SpeakerCount = Annotated[Annotated[int, Field(ge=1)] | None, BeforeValidator(_whole_number)]
Flag = StrictBool | None


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TranscriptionConfig(ApiModel):
    # The reference's two names, plus the Whisper models that ship with diarist.
    model: AsrModel | None = None


class DiarizeRequest(ApiModel):
    url: str = Field(description="http(s) URL of the audio, or a media:// URL from /v1/media/input")
    webhook: str | None = Field(None, description="URL that receives the job when it ends")
    webhookStatusOnly: Flag = Field(False, description="webhook payload without the output")
    model: Literal["precision-2", "community-1"] | None = "precision-2"
    numSpeakers: SpeakerCount = None
    minSpeakers: SpeakerCount = None
    maxSpeakers: SpeakerCount = None
    turnLevelConfidence: Flag = False
    exclusive: Flag = False
    confidence: Flag = False
    transcription: Flag = False
    transcriptionConfig: TranscriptionConfig | None = None

    def normalized(self) -> dict[str, Any]:
        """The request as stored with the job: nulls replaced by their defaults."""
        body = self.model_dump()
        for name in ("webhookStatusOnly", "turnLevelConfidence", "exclusive", "confidence", "transcription"):
            body[name] = bool(body[name])
        body["model"] = body["model"] or "precision-2"
        return body


class MediaRequest(ApiModel):
    url: str = Field(max_length=255, description="media://object-key", examples=["media://meeting.wav"])


class MediaResponse(BaseModel):
    url: str


class TestResponse(BaseModel):
    status: str
    message: str


class JobCreated(BaseModel):
    jobId: str
    status: JobStatus
    warning: str | None = None


class JobOut(BaseModel):
    jobId: str
    status: JobStatus
    createdAt: datetime
    updatedAt: datetime
    progress: int | None = Field(None, description="0-100 while running (a diarist extension)")
    output: dict[str, Any] | None = None


class JobListItem(BaseModel):
    id: str
    status: JobStatus
    createdAt: datetime


class JobListV2(BaseModel):
    items: list[JobListItem]
    nextCursor: str | None


class JobListV1(BaseModel):
    items: list[JobListItem]
    total: int


class FieldError(BaseModel):
    field: str
    message: str


class ValidationErrorResponse(BaseModel):
    message: str = "Invalid request"
    errors: list[FieldError]
    requestId: str | None = None


class ApiError(BaseModel):
    requestId: str
    message: str
