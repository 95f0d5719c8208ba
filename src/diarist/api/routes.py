"""The HTTP routes. Each one checks its input, calls the store or the queue, and shapes the answer."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response, Security
from fastapi import Path as PathParameter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from diarist.api.auth import current_key
from diarist.api.errors import ApiProblem, InvalidRequest
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
    MediaRequest,
    MediaResponse,
    Peaks,
    SpeakerNames,
    SpeakerOptions,
    SpeakerRenames,
    TestResponse,
    ValidationErrorResponse,
    VoiceprintRequest,
)
from diarist.api.services import Services, services
from diarist.audio import duration_seconds
from diarist.errors import AudioError
from diarist.exports import FORMATS, apply_names, default_names, output_speakers, render
from diarist.jobs.media import make_token, media_type, object_key, read_token
from diarist.jobs.payloads import job_json, list_item
from diarist.jobs.store import QuotaExceededError, StorageQuotaError, storage_quota_message
from diarist.jobs.tables import SUCCEEDED, ApiKey, Job
from diarist.net import UrlRefused, check_url, redact_url
from diarist.private_files import disk_full_errors, open_private
from diarist.vocabulary import name_problem
from diarist.voiceprints import MAX_BYTES as VOICEPRINT_MAX_BYTES
from diarist.voiceprints import MAX_SECONDS as VOICEPRINT_MAX_SECONDS
from diarist.voiceprints import VoiceprintError, decode

MAX_SKIP = 2**31 - 1  # far beyond any real job list; larger offsets overflow the database's integers
# pyannoteAI's operationIds, so generated clients name methods as theirs do; ours for diarist's extensions.
OPERATION_IDS = {
    "test_key": "testKey",
    "diarize": "diarize",
    "voiceprint": "voiceprint",
    "identify": "identify",
    "get_job": "getJobById",
    "cancel_job": "cancelJob",
    "list_jobs_v2": "getJobsByTeamV2",
    "list_jobs_v1": "getJobsByTeam",
    "media_input": "getMediaUploadURL",
    "media_output": "getMediaDownloadURL",
    "media_upload": "uploadMedia",
    "media_download": "downloadMedia",
    "get_peaks": "getJobPeaks",
    "get_speakers": "getSpeakerNames",
    "put_speakers": "setSpeakerNames",
    "export_job": "exportJob",
}


def operation_id(route: APIRoute) -> str:
    """The reference's operationId of a route, or its function name in camelCase for a new one."""
    first, *rest = route.name.split("_")
    return OPERATION_IDS.get(route.name, first + "".join(word.title() for word in rest))


class ApiRoute(APIRoute):
    """A route whose 405 names every method its path has (GET and DELETE on a job), not only its own."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            siblings = [r for r in router.routes if isinstance(r, APIRoute) and r.path_format == self.path_format]
            methods = sorted({m for r in siblings for m in r.methods})
            raise HTTPException(405, headers={"Allow": ", ".join(methods)})
        await super().handle(scope, receive, send)


# Declares the `api-key` bearer scheme in the OpenAPI (the Authorize button of /docs); the check is current_key's.
bearer = HTTPBearer(scheme_name="api-key", bearerFormat="API key", auto_error=False)


def authenticated(key: Annotated[ApiKey, Depends(current_key)], _: Annotated[Any, Security(bearer)]) -> ApiKey:
    """The caller's key, for routes that need one."""
    return key


Key = Annotated[ApiKey, Depends(authenticated)]
Svc = Annotated[Services, Depends(services)]
JobId = Annotated[
    str, PathParameter(description="The jobId that POST /v1/diarize, /v1/voiceprint or /v1/identify answered")
]
router = APIRouter(route_class=ApiRoute, generate_unique_id_function=operation_id)


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
    if body.numSpeakers is not None:
        for name in ("minSpeakers", "maxSpeakers"):
            if getattr(body, name) is not None:
                errors.append((name, "Cannot be used together with numSpeakers"))
    if body.minSpeakers is not None and body.maxSpeakers is not None and body.minSpeakers > body.maxSpeakers:
        errors.append(("minSpeakers", "Must be less than or equal to maxSpeakers"))
    return errors


def _media_url_errors(field: str, url: str) -> list[tuple[str, str]]:
    try:
        object_key(url)
    except ValueError as e:
        return [(field, f"Invalid media URL: {e}")]
    return []


def _check_url(field: str, url: str, svc: Services, allow_media: bool) -> list[tuple[str, str]]:
    if allow_media and url.startswith("media://"):
        return _media_url_errors(field, url)
    try:
        check_url(url, svc.policy)
    except UrlRefused as e:
        return [(field, str(e))]
    return []


def _check_input(body: JobRequest, svc: Services) -> list[tuple[str, str]]:
    errors = _check_url("url", body.url, svc, allow_media=True)
    if body.webhook is not None:
        errors += _check_url("webhook", body.webhook, svc, allow_media=False)
    return errors


def _submit(kind: str, body: JobRequest, key: ApiKey, svc: Services, seconds: float | None = None) -> JobCreated:
    """Queue a checked job request; 404 for a media:// URL never uploaded, 402 past the audio quota.

    `seconds`: the audio's length when already known (else read from an upload's header).
    """
    if body.url.startswith("media://") and svc.store.get_media(key.id, object_key(body.url)) is None:
        raise ApiProblem(404, f"Media {body.url} not found: upload it first (uploads expire after a while).")
    if seconds is None:
        seconds = _known_seconds(svc, key, body.url)
    try:
        job = svc.queue.submit(key.id, kind, body.normalized(), seconds)
    except QuotaExceededError as e:
        raise ApiProblem(402, str(e)) from None
    return JobCreated(jobId=job.id, status="created")


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
def diarize(body: DiarizeRequest, key: Key, svc: Svc) -> JobCreated:
    errors = _check_speakers(body)
    if body.transcription and (body.model or "precision-2") != "precision-2":
        errors.append(("transcription", "Only available with the precision-2 model"))
    errors += _check_input(body, svc)
    if errors:
        raise InvalidRequest(errors)
    return _submit("diarize", body, key, svc)


@router.post(
    "/v1/voiceprint",
    response_model=JobCreated,
    response_model_exclude_none=True,
    summary="Extract voiceprint",
    description="Creates a job that makes the voiceprint of the person speaking in the audio at `url`: at most "
    f"{VOICEPRINT_MAX_SECONDS:g} s and 100 MiB, one person. When several people talk, the voiceprint is of the one "
    "who talks most, and the output warns. The job's output is `{voiceprint[, warning]}`; pass the voiceprint "
    "to POST /v1/identify.",
    responses=JOB_RESPONSES,
)
def voiceprint(body: VoiceprintRequest, key: Key, svc: Svc) -> JobCreated:
    if errors := _check_input(body, svc):
        raise InvalidRequest(errors)
    media = svc.store.get_media(key.id, object_key(body.url)) if body.url.startswith("media://") else None
    if media is not None and media.size > VOICEPRINT_MAX_BYTES:
        limit = VOICEPRINT_MAX_BYTES / 1024**2
        message = f"The file holds {media.size / 1024**2:.0f} MiB; a voiceprint takes at most {limit:g} MiB"
        raise InvalidRequest([("url", message)])
    seconds = _known_seconds(svc, key, body.url, always=True)
    if round(seconds, 1) > VOICEPRINT_MAX_SECONDS:
        limit = VOICEPRINT_MAX_SECONDS
        message = f"The audio lasts {seconds:.1f} s; a voiceprint takes at most {limit:g} s of one person speaking"
        raise InvalidRequest([("url", message)])
    return _submit("voiceprint", body, key, svc, seconds)


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
def identify(body: IdentifyRequest, key: Key, svc: Svc) -> JobCreated:
    errors = _check_speakers(body) + _check_voiceprints(body)
    if body.transcription:
        errors.append(("transcription", "Cannot be used with speaker identification"))
    errors += _check_input(body, svc)
    if errors:
        raise InvalidRequest(errors)
    return _submit("identify", body, key, svc)


def _known_seconds(svc: Services, key: ApiKey, url: str, always: bool = False) -> float:
    """An upload's duration from its container header, held on the quota at submit.

    0 when unknown: a URL (the worker holds it once downloaded) or a file that is not audio
    (its job fails). Read only for a key with a quota, unless `always`.
    """
    if (key.quota_seconds is None and not always) or not url.startswith("media://"):
        return 0.0
    try:
        return duration_seconds(svc.media.path(key.id, object_key(url))) or 0.0
    except AudioError:
        return 0.0


def _own_job(svc: Services, key: ApiKey, job_id: str) -> Job:
    job = svc.store.get_job(job_id, key.id)
    if job is None:
        raise ApiProblem(404, f"Job {job_id} not found.")
    return job


@router.get(
    "/v1/jobs/{jobId}",
    response_model=JobOut,
    summary="Get job by ID",
    description="The job, with its `output` once it has ended: the result when `succeeded`, `{error}` when "
    "`failed` or `canceled`. Outputs are deleted a while after the job ends (24 h by default).",
    responses={404: {"model": ApiError, "description": "No such job"}},
)
def get_job(
    jobId: JobId,
    key: Key,
    svc: Svc,
    details: Annotated[
        bool, Query(description="Add the job's `kind` and input `url` (a diarist extension, for the web page)")
    ] = False,
    names: Annotated[
        bool,
        Query(
            description="Give the output's speakers the names set by PUT /v1/jobs/{jobId}/speakers (an identify "
            "job's speakers default to their matched label) in every speaker field (a diarist extension)"
        ),
    ] = False,
) -> JSONResponse:
    job = _own_job(svc, key, jobId)
    body = job_json(job)
    if names and "output" in body and job.status == SUCCEEDED:
        body["output"] = apply_names(body["output"], _names(job))
    if details:
        body["kind"] = job.kind
        body["url"] = redact_url(job.request["url"])
    return JSONResponse(body)


def _names(job: Job) -> dict[str, str]:
    """The names a job's speakers go by: an identify job's matches, overridden by the user's own."""
    return default_names(job.output) | (job.speaker_names or {})


OUTPUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such job"},
    409: {
        "model": ApiError,
        "description": "The job has no output (not succeeded, or expired), or is a voiceprint job",
    },
}


def _with_output(svc: Services, key: ApiKey, job_id: str) -> Job:
    """The key's job, if it succeeded and still has its output; else 404 or 409."""
    job = _own_job(svc, key, job_id)
    if job.status != SUCCEEDED or job.output is None:
        state = "has not succeeded" if job.status != SUCCEEDED else "no longer has its output (outputs expire)"
        raise ApiProblem(409, f"Job {job_id} {state}: it has no speakers to name or output to export.")
    return job


def _json(request: Request, body: Any) -> Response:
    """Compact JSON, gzipped when the client takes it: a long file's peaks shrink several times."""
    data = json.dumps(body, separators=(",", ":")).encode()
    if "gzip" not in request.headers.get("accept-encoding", "") or len(data) < 1024:
        return Response(data, media_type="application/json", headers={"Vary": "Accept-Encoding"})
    headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    return Response(gzip.compress(data, compresslevel=5), media_type="application/json", headers=headers)


@router.get(
    "/v1/jobs/{jobId}/peaks",
    response_model=Peaks,
    summary="Get the waveform overview of a job (diarist extension)",
    description="The largest |sample| of each 1/`rate` s of the job's audio, scaled to 0..127, measured by the worker "
    "while it decoded the audio for the job: at most about 100,000 values whatever the length, so a web page "
    "draws a 3-hour file at once without downloading or decoding it. Diarize and identify jobs that succeeded, "
    "until their output expires.",
    responses={404: {"model": ApiError, "description": "No such job, or the job has no peaks"}},
)
def get_peaks(jobId: JobId, request: Request, key: Key, svc: Svc) -> Response:
    job = _own_job(svc, key, jobId)
    peaks = svc.store.get_peaks(job.id)
    if peaks is None:
        raise ApiProblem(
            404,
            f"Job {jobId} has no waveform peaks: only diarize and identify jobs that succeeded have them, "
            "until their output expires.",
        )
    return _json(request, peaks.to_dict())


@router.get(
    "/v1/jobs/{jobId}/speakers",
    response_model=SpeakerNames,
    summary="Get the names of a job's speakers (diarist extension)",
    description="The names given to the job's speaker ids (`{}` when none); an identify job's speakers are named "
    "after their matched voiceprint unless renamed.",
    responses={404: {"model": ApiError, "description": "No such job"}},
)
def get_speakers(jobId: JobId, key: Key, svc: Svc) -> JSONResponse:
    job = _own_job(svc, key, jobId)
    return JSONResponse(_names(job) if job.status == SUCCEEDED and job.output is not None else {})


@router.put(
    "/v1/jobs/{jobId}/speakers",
    response_model=SpeakerNames,
    summary="Name a job's speakers (diarist extension)",
    description='Gives names to speaker ids of the job\'s output (SPEAKER_00, ...); null or "" removes a name. '
    "The names are kept with the job (deleted with its output) and applied by `GET /v1/jobs/{jobId}?names=true` "
    "and the exports; the plain job output keeps the ids. Answers every name the job's speakers now have.",
    responses=OUTPUT_RESPONSES,
)
def put_speakers(jobId: JobId, body: Annotated[SpeakerRenames, Body()], key: Key, svc: Svc) -> JSONResponse:
    job = _with_output(svc, key, jobId)
    if job.kind == "voiceprint":
        raise ApiProblem(409, f"Job {jobId} is a voiceprint job: it has no speakers to name.")
    speakers = output_speakers(job.output or {})
    errors = []
    renames: dict[str, str | None] = {}
    for speaker, name in body.items():
        name = (name or "").strip()  # a name of spaces only would show as nothing: it removes the name
        if speaker not in speakers:
            errors.append((speaker, f"Not a speaker of this job's output (it has {', '.join(sorted(speakers))})"))
        elif name and (problem := name_problem(name)):
            errors.append((speaker, f"A name {problem}"))
        renames[speaker] = name or None
    if errors:
        raise InvalidRequest(errors)
    named = svc.store.set_speaker_names(job.id, key.id, renames)
    if named is None:
        raise ApiProblem(409, f"Job {jobId} no longer has its output (outputs expire): its speakers cannot be named.")
    job.speaker_names = named
    return JSONResponse(_names(job))


@router.get(
    "/v1/jobs/{jobId}/export",
    summary="Export a job's output as a file (diarist extension)",
    description="The output with the speakers' names (`PUT /v1/jobs/{jobId}/speakers`) as a file to save: JSON, "
    "RTTM, or SubRip, WebVTT and text subtitles, from the transcript when the job has one, else one cue per "
    "diarization turn. The same files as `diarist diarize --format`.",
    response_class=Response,
    responses={
        200: {
            "description": "The file, as an attachment named `<jobId>.<format>`",
            "content": {kind: {"schema": {"type": "string"}} for _ext, kind in FORMATS.values()},
        },
        **OUTPUT_RESPONSES,
    },
)
def export_job(
    jobId: JobId,
    key: Key,
    svc: Svc,
    format: Annotated[Literal["json", "rttm", "srt", "vtt", "txt"], Query(description="The file format")] = "json",
) -> Response:
    job = _with_output(svc, key, jobId)
    if job.kind == "voiceprint" and format != "json":
        raise ApiProblem(409, f"Job {jobId} is a voiceprint job: it has no speaker turns for {format}, only json.")
    output = apply_names(job.output or {}, _names(job))
    extension, kind = FORMATS[format]
    headers = {"Content-Disposition": f'attachment; filename="{job.id}.{extension}"'}
    return Response(render(output, format, uri=job.id), media_type=kind, headers=headers)


@router.delete(
    "/v1/jobs/{jobId}",
    response_model=JobOut,
    summary="Cancel a job (diarist extension)",
    description="Cancels a job that has not ended; it answers the canceled job. Canceling it again answers it again.",
    responses={
        404: {"model": ApiError, "description": "No such job"},
        409: {"model": ApiError, "description": "The job already succeeded or failed"},
    },
)
def cancel_job(jobId: JobId, key: Key, svc: Svc) -> JSONResponse:
    job = svc.store.cancel_job(jobId, key.id) or _own_job(svc, key, jobId)
    if job.status != "canceled":
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


# pyannoteAI routes diarist does not serve yet: a clear 501 rather than a bare 404, so an SDK user
# learns the server is reachable and the feature is missing. Kept out of the OpenAPI document.
NOT_YET = {"/v1/live": "Live streaming"}


def not_implemented(request: Request, key: Key) -> None:
    feature = NOT_YET[request.url.path]
    raise ApiProblem(501, f"{feature} ({request.url.path}) is not implemented by this diarist server yet.")


for _path in NOT_YET:
    router.add_api_route(_path, not_implemented, methods=["POST"], include_in_schema=False)


def _media_key(url: str) -> str:
    if errors := _media_url_errors("url", url):
        raise InvalidRequest(errors)
    return object_key(url)


def _base_url(request: Request, svc: Services) -> str:
    return (svc.settings.public_url or str(request.base_url)).rstrip("/")


def _signed_target(svc: Services, action: str, token: str, refusal: str) -> tuple[str, str]:
    """(key id, object key) of a pre-signed URL's token, if it is valid and its key still live; else 403."""
    target = read_token(svc.secret, action, token)
    key = None if target is None else svc.store.get_key(target[0])
    if target is None or key is None or key.revoked_at is not None:
        raise ApiProblem(403, refusal)
    return target


def _storage_quota(svc: Services, key_id: str) -> int:
    """Bytes of uploads the key may hold; 0: no limit."""
    key = svc.store.get_key(key_id)
    own = None if key is None else key.storage_quota_bytes
    return svc.settings.max_storage_bytes_per_key if own is None else own


def _check_upload_size(size: int, limit: int, used: int, quota: int) -> None:
    """413 for a file over the size limit, or one that would take the key's uploads over its quota."""
    if size > limit:
        raise ApiProblem(413, f"The file is larger than the {limit / 1024**3:g} GiB limit.")
    if quota and used + size > quota:
        raise ApiProblem(413, storage_quota_message(used + size, quota))


async def _receive(request: Request, path: Path, check: Callable[[int], None]) -> int:
    """Stream the request body into `path` (0600), calling `check` with the size so far; the size."""
    size = 0
    with open_private(path) as f:
        async for chunk in request.stream():
            size += len(chunk)
            check(size)
            await run_in_threadpool(f.write, chunk)
    return size


@router.post("/v1/media/input", status_code=201, response_model=MediaResponse, summary="Get upload URL")
def media_input(body: MediaRequest, request: Request, key: Key, svc: Svc) -> MediaResponse:
    token = make_token(svc.secret, "put", key.id, _media_key(body.url), svc.settings.upload_url_ttl_seconds)
    return MediaResponse(url=f"{_base_url(request, svc)}/v1/media/upload/{token}")


@router.post(
    "/v1/media/output",
    status_code=201,
    response_model=MediaResponse,
    summary="Get download URL",
    responses={404: {"model": ApiError, "description": "No such media"}},
)
def media_output(body: MediaRequest, request: Request, key: Key, svc: Svc) -> MediaResponse:
    name = _media_key(body.url)
    if svc.store.get_media(key.id, name) is None:
        raise ApiProblem(404, f"Media {body.url} not found.")
    token = make_token(svc.secret, "get", key.id, name, svc.settings.upload_url_ttl_seconds)
    return MediaResponse(url=f"{_base_url(request, svc)}/v1/media/download/{token}")


@router.put(
    "/v1/media/upload/{token}",
    summary="Upload media to a pre-signed URL (no API key: the URL is the permission)",
    responses={403: {"model": ApiError}, 413: {"model": ApiError}},
)
async def media_upload(token: str, request: Request, svc: Svc) -> Response:
    refusal = "This upload URL is invalid or has expired, or its key was revoked; ask /v1/media/input for a new one."
    key_id, name = await run_in_threadpool(_signed_target, svc, "put", token, refusal)
    quota = await run_in_threadpool(_storage_quota, svc, key_id)
    # The quota counts the key's other uploads: this one replaces any file of the same name.
    used = await run_in_threadpool(svc.store.storage_used, key_id, name) if quota else 0
    with svc.uploads.track(key_id) as arriving:

        def check(size: int) -> None:
            # The key's other uploads still arriving count as stored: they will be, once complete.
            _check_upload_size(size, svc.settings.max_input_bytes, used + arriving(size), quota)

        check(int(request.headers.get("content-length") or 0))
        await _store_upload(request, svc, key_id, name, quota, check)
    return Response(status_code=200)


async def _store_upload(
    request: Request, svc: Services, key_id: str, name: str, quota: int, check: Callable[[int], None]
) -> None:
    """Write the body beside its final place, record it, then move it there; nothing is left on failure."""
    with disk_full_errors("The server's disk is full; the upload was not kept."):
        part = svc.media.partial_path(key_id, name)
        try:
            size = await _receive(request, part, check)
            # Recorded first, with the quota checked again in the same transaction (parallel uploads).
            # The origin tells workers on other machines where to fetch the file from.
            origin = svc.settings.own_internal_url
            await run_in_threadpool(svc.store.record_upload, key_id, name, size, quota, origin)
            part.replace(svc.media.path(key_id, name))
        except StorageQuotaError as e:
            raise ApiProblem(413, str(e)) from None
        finally:
            part.unlink(missing_ok=True)


@router.get(
    "/v1/media/download/{token}",
    summary="Download media from a pre-signed URL",
    description="The file, with its audio media type. Answers HTTP Range requests (206), so that a browser's "
    "<audio> element plays and seeks a long file without downloading it whole.",
    responses={
        400: {"model": ValidationErrorResponse, "description": "Malformed Range header"},
        403: {"model": ApiError},
        404: {"model": ApiError},
        416: {"model": ApiError, "description": "The range is outside the file"},
    },
)
def media_download(token: str, request: Request, svc: Svc) -> FileResponse:
    refusal = "This download URL is invalid or has expired, or its key was revoked; ask /v1/media/output for a new one."
    path = svc.media.path(*_signed_target(svc, "get", token, refusal))
    try:
        size, kind = path.stat().st_size, media_type(path)
    except FileNotFoundError:
        raise ApiProblem(404, "This media no longer exists.") from None
    _check_range(request.headers.get("range"), size)
    # FileResponse answers Range requests (206, Content-Range, Accept-Ranges) itself.
    return FileResponse(path, media_type=kind)


def _check_range(header: str | None, size: int) -> None:
    """Refuse a Range header FileResponse would refuse, in the API's error shapes rather than its plain text."""
    if header is None:
        return
    try:
        FileResponse._parse_range_header(header, size)
    except RangeNotSatisfiable:
        raise ApiProblem(
            416, f"The range {header!r} is outside the file ({size} bytes).", {"Content-Range": f"bytes */{size}"}
        ) from None
    except MalformedRangeHeader as e:
        raise InvalidRequest([("Range", f"Malformed Range header: {e.content}")]) from None
