"""The jobs: submit one of each kind, read one, cancel one, list them; and the key's own check."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from diarist.api.errors import ApiProblem, InvalidRequest
from diarist.api.routes.base import (
    NO_JOB,
    JobId,
    Key,
    Svc,
    check_field_url,
    own_job,
    read_media_url,
    router,
    speaker_names,
)
from diarist.api.schemas import (
    ApiError,
    DiarizeRequest,
    IdentifyRequest,
    JobCreated,
    JobListV1,
    JobListV2,
    JobOut,
    JobRequest,
    JobStatus,
    SpeakerOptions,
    TestResponse,
    VoiceprintRequest,
)
from diarist.api.services import Services
from diarist.exports import apply_names
from diarist.jobs.intake import InputLimitError, MediaNotFoundError, submit
from diarist.jobs.kinds import VOICEPRINT, spec_of
from diarist.jobs.payloads import job_json, list_item
from diarist.jobs.spec import camel
from diarist.jobs.store import QuotaExceededError
from diarist.jobs.tables import CANCELED, CREATED, SUCCEEDED, ApiKey
from diarist.net import redact_url
from diarist.vocabulary import DEFAULT_MODEL, TRANSCRIBING_MODELS, count_conflicts
from diarist.voiceprints import VoiceprintError, decode

MAX_SKIP = 2**31 - 1  # far beyond any real job list; larger offsets overflow the database's integers


@router.get(
    "/v1/test",
    response_model=TestResponse,
    summary="Test API endpoint",
    description="Checks that the API key works.",
)
def test_key(key: Key) -> dict[str, str]:
    return {"status": "OK", "message": "Test connection successful"}


def _check_speakers(body: SpeakerOptions) -> list[tuple[str, str]]:
    errors = []
    for name, other in count_conflicts(body.numSpeakers, body.minSpeakers, body.maxSpeakers):
        rule = "Cannot be used together with" if other == "num_speakers" else "Must be less than or equal to"
        errors.append((camel(name), f"{rule} {camel(other)}"))
    return errors


def _check_input(body: JobRequest, svc: Services, errors: list[tuple[str, str]]) -> str | None:
    """Raise the request's errors, with its URLs' own, as one 400; the media:// input's object key, if any."""
    name = None
    if body.url.startswith("media://"):
        name = read_media_url(body.url, errors)
    else:
        errors += check_field_url("url", body.url, svc)
    if body.webhook is not None:
        errors += check_field_url("webhook", body.webhook, svc)
    if errors:
        raise InvalidRequest(errors)
    return name


async def _submit(body: JobRequest, key: ApiKey, svc: Services, errors: list[tuple[str, str]]) -> JobCreated:
    """Queue a request whose own checks found `errors`: 400 for any, 404 for a media:// URL never uploaded,
    402 past the audio quota.

    The submit routes are `async` and send only this to a thread: FastAPI would otherwise run a plain
    `def` route in one thread hop, then check its answer against `JobCreated` in a second.
    """
    return await run_in_threadpool(_queue, body, key, svc, errors)


def _queue(body: JobRequest, key: ApiKey, svc: Services, errors: list[tuple[str, str]]) -> JobCreated:
    """`_submit`'s blocking part: the URLs' checks (DNS), the upload's record, the job's."""
    name = _check_input(body, svc, errors)
    try:
        job = submit(svc.store, svc.media, svc.queue, key, body.to_spec(), name)
    except MediaNotFoundError as e:
        raise ApiProblem(404, str(e)) from None
    except InputLimitError as e:
        raise InvalidRequest([("url", str(e))]) from None
    except QuotaExceededError as e:
        raise ApiProblem(402, str(e)) from None
    return JobCreated(jobId=job.id, status=CREATED)


JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    402: {"model": ApiError, "description": "Audio quota used up"},
    404: {"model": ApiError, "description": "The media:// URL was never uploaded, or has expired"},
}


@router.post(
    "/v1/diarize",
    response_model=JobCreated,
    response_model_exclude_none=True,
    summary="Diarize audio",
    description="Creates a diarization job for the audio at `url` and answers its id at once. Poll "
    "`GET /v1/jobs/{jobId}` or pass a `webhook` to learn when it ends. Limits: 1 GiB and 24 h of audio "
    "by default (settings `max_input_bytes`, `max_duration_hours`).",
    responses=JOB_RESPONSES,
)
async def diarize(body: DiarizeRequest, key: Key, svc: Svc) -> JobCreated:
    errors = _check_speakers(body)
    if body.transcription and (body.model or DEFAULT_MODEL) not in TRANSCRIBING_MODELS:
        errors.append(("transcription", f"Only available with the {' or '.join(TRANSCRIBING_MODELS)} model"))
    return await _submit(body, key, svc, errors)


@router.post(
    "/v1/voiceprint",
    response_model=JobCreated,
    response_model_exclude_none=True,
    summary="Extract voiceprint",
    description="Creates a job that makes the voiceprint of the person speaking in the audio at `url`: at most "
    f"{VOICEPRINT.max_input_seconds:g} s and {VOICEPRINT.max_input_bytes / 1024**2:g} MiB, one person. When "
    "several people talk, the voiceprint is of the one who talks most, and the output warns. The job's output "
    "is `{voiceprint[, warning]}`; pass the voiceprint to POST /v1/identify.",
    responses=JOB_RESPONSES,
)
async def voiceprint(body: VoiceprintRequest, key: Key, svc: Svc) -> JobCreated:
    return await _submit(body, key, svc, [])


def _check_voiceprints(body: IdentifyRequest) -> list[tuple[str, str]]:
    errors = []
    seen: set[str] = set()
    for i, item in enumerate(body.voiceprints):
        if item.label in seen:
            errors.append((f"voiceprints[{i}].label", f"Label {item.label!r} is given twice: labels must be unique"))
        seen.add(item.label)
        try:
            decode(item.voiceprint)
        except VoiceprintError as e:
            errors.append((f"voiceprints[{i}].voiceprint", f"This voiceprint {e}"))
    return errors


@router.post(
    "/v1/identify",
    response_model=JobCreated,
    response_model_exclude_none=True,
    summary="Identify speaker with diarization",
    description="Creates a job that diarizes the audio at `url`, then matches each speaker with the voiceprints "
    "(made by POST /v1/voiceprint). The output is the diarization output plus `identification` (the turns, named "
    "after their matched voiceprint where there is one) and `voiceprints` (each speaker's match and its confidence, "
    "0-100, for every label). Same limits as diarize.",
    responses=JOB_RESPONSES,
)
async def identify(body: IdentifyRequest, key: Key, svc: Svc) -> JobCreated:
    errors = _check_speakers(body) + _check_voiceprints(body)
    if body.transcription:
        errors.append(("transcription", "Cannot be used with speaker identification"))
    return await _submit(body, key, svc, errors)


@router.get(
    "/v1/jobs/{jobId}",
    response_model=JobOut,
    summary="Get job by ID",
    description="The job, with its `output` once it has ended: the result when `succeeded`, `{error}` when "
    "`failed` or `canceled`. Outputs are deleted a while after the job ends (24 h by default).",
    responses=NO_JOB,
)
def get_job(
    jobId: JobId,
    key: Key,
    svc: Svc,
    details: Annotated[
        bool,
        Query(
            description="Add the job's `kind`, input `url`, `model`, `options` (those it set to other than their "
            "defaults) and, once a worker has taken it, its `attempt` (a diarist extension, for the web page)"
        ),
    ] = False,
    names: Annotated[
        bool,
        Query(
            description="Give the output's speakers the names set by PUT /v1/jobs/{jobId}/speakers (an identify "
            "job's speakers default to their matched label) in every speaker field (a diarist extension)"
        ),
    ] = False,
) -> JSONResponse:
    job = own_job(svc, key, jobId)
    body = job_json(job)
    if names and "output" in body and job.status == SUCCEEDED:
        body["output"] = apply_names(body["output"], speaker_names(job))
    if details:
        spec = spec_of(job)
        body["kind"] = job.kind
        body["url"] = redact_url(spec.url)
        body["model"] = spec.model
        body["options"] = spec.changed_options()
        if job.attempts:  # a job run again after its worker died starts over: say it is a new attempt
            body["attempt"] = job.attempts
    return JSONResponse(body)


@router.delete(
    "/v1/jobs/{jobId}",
    response_model=JobOut,
    summary="Cancel a job (diarist extension)",
    description="Cancels a job that has not ended; it answers the canceled job. Canceling it again answers it again.",
    responses={
        **NO_JOB,
        409: {"model": ApiError, "description": "The job already succeeded or failed"},
    },
)
def cancel_job(jobId: JobId, key: Key, svc: Svc) -> JSONResponse:
    job = svc.store.cancel_job(jobId, key.id) or own_job(svc, key, jobId)
    if job.status != CANCELED:
        raise ApiProblem(409, f"Job {jobId} already {job.status}; only a job that has not ended can be canceled.")
    return JSONResponse(job_json(job))


@router.get(
    "/v2/jobs",
    response_model=JobListV2,
    summary="Get all jobs",
    description="The key's jobs, newest first, without their output.",
)
def list_jobs_v2(
    key: Key,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=100, description="Number of jobs to return")] = 10,
    cursor: Annotated[
        uuid.UUID | None, Query(description="The nextCursor of the previous page, for the page after it")
    ] = None,
    status: Annotated[JobStatus | None, Query(description="Only jobs with this status")] = None,
) -> JSONResponse:
    after = None
    if cursor is not None:
        after = svc.store.get_job(str(cursor), key.id)
        if after is None:
            raise InvalidRequest([("cursor", "Unknown cursor: pass the nextCursor of a previous page")])
    jobs = svc.store.list_jobs(key.id, status, limit + 1, after=after)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return JSONResponse({"items": [list_item(j) for j in jobs], "nextCursor": jobs[-1].id if more else None})


@router.get(
    "/v1/jobs",
    response_model=JobListV1,
    summary="Get all jobs (older API)",
    description="The key's jobs, newest first, without their output; pages by offset.",
)
def list_jobs_v1(
    key: Key,
    svc: Svc,
    take: Annotated[int, Query(ge=1, le=100, description="Number of jobs to return")] = 10,
    skip: Annotated[int, Query(ge=0, le=MAX_SKIP, description="Number of jobs to skip")] = 0,
    status: Annotated[JobStatus | None, Query(description="Only jobs with this status")] = None,
) -> JSONResponse:
    jobs = svc.store.list_jobs(key.id, status, take, skip=skip)
    return JSONResponse({"items": [list_item(j) for j in jobs], "total": svc.store.count_jobs(key.id, status)})
