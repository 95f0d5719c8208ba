"""The HTTP routes. Each one checks its input, calls the store or the queue, and shapes the answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse

from diarist.api.auth import current_key
from diarist.api.errors import ApiProblem, InvalidRequest
from diarist.api.schemas import (
    ApiError,
    DiarizeRequest,
    JobCreated,
    JobListV1,
    JobListV2,
    JobOut,
    JobStatus,
    MediaRequest,
    MediaResponse,
    TestResponse,
    ValidationErrorResponse,
)
from diarist.api.services import Services, services
from diarist.jobs.media import make_token, object_key, read_token
from diarist.jobs.net import UrlRefused, check_url
from diarist.jobs.store import RUNNING, ApiKey, Job

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ValidationErrorResponse, "description": "Invalid request"},
    401: {"model": ApiError, "description": "Missing or unknown API key"},
    429: {"model": ApiError, "description": "Too many requests"},
}
Key = Annotated[ApiKey, Depends(current_key)]
Svc = Annotated[Services, Depends(services)]
router = APIRouter(responses=ERRORS)


def timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_json(job: Job) -> dict[str, Any]:
    """`{jobId, status, createdAt, updatedAt[, progress][, output]}`; never `output: null`."""
    body: dict[str, Any] = {
        "jobId": job.id,
        "status": job.status,
        "createdAt": timestamp(job.created_at),
        "updatedAt": timestamp(job.updated_at),
    }
    if job.status == RUNNING:
        body["progress"] = job.progress or 0
    if job.output is not None:
        body["output"] = job.output
    return body


@router.get("/v1/test", response_model=TestResponse, summary="Test API key")
def test_key(key: Key) -> dict[str, str]:
    return {"status": "OK", "message": "Test connection successful"}


def _check_speakers(body: DiarizeRequest) -> list[tuple[str, str]]:
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


@router.post(
    "/v1/diarize",
    response_model=JobCreated,
    response_model_exclude_none=True,
    summary="Diarize audio",
    responses={402: {"model": ApiError, "description": "Audio quota used up"}},
)
def diarize(body: DiarizeRequest, key: Key, svc: Svc) -> JobCreated:
    errors = _check_speakers(body)
    if body.transcription and (body.model or "precision-2") != "precision-2":
        errors.append(("transcription", "Only available with the precision-2 model"))
    errors += _check_url("url", body.url, svc, allow_media=True)
    if body.webhook is not None:
        errors += _check_url("webhook", body.webhook, svc, allow_media=False)
    if errors:
        raise InvalidRequest(errors)
    if body.url.startswith("media://") and svc.store.get_media(key.id, object_key(body.url)) is None:
        raise ApiProblem(404, f"Media {body.url} not found: upload it first (uploads expire after a while).")
    if key.quota_seconds is not None and key.used_seconds >= key.quota_seconds:
        raise ApiProblem(402, f"This key's quota of {key.quota_seconds / 3600:g} hours of audio is used up.")
    job = svc.queue.submit(key.id, "diarize", body.normalized())
    return JobCreated(jobId=job.id, status="created")


def _own_job(svc: Services, key: ApiKey, job_id: str) -> Job:
    job = svc.store.get_job(job_id, key.id)
    if job is None:
        raise ApiProblem(404, f"Job {job_id} not found.")
    return job


@router.get(
    "/v1/jobs/{jobId}",
    response_model=JobOut,
    summary="Get job by ID",
    responses={404: {"model": ApiError, "description": "No such job"}},
)
def get_job(jobId: str, key: Key, svc: Svc) -> JSONResponse:
    return JSONResponse(job_json(_own_job(svc, key, jobId)))


@router.delete(
    "/v1/jobs/{jobId}",
    response_model=JobOut,
    summary="Cancel a job (diarist extension)",
    responses={404: {"model": ApiError}, 409: {"model": ApiError, "description": "The job already ended"}},
)
def cancel_job(jobId: str, key: Key, svc: Svc) -> JSONResponse:
    job = svc.store.cancel_job(jobId, key.id) or _own_job(svc, key, jobId)
    if job.status != "canceled":
        raise ApiProblem(409, f"Job {jobId} already {job.status}; only a job that has not ended can be canceled.")
    return JSONResponse(job_json(job))


def _list_item(job: Job) -> dict[str, str]:
    return {"id": job.id, "status": job.status, "createdAt": timestamp(job.created_at)}


@router.get("/v2/jobs", response_model=JobListV2, summary="List jobs, newest first")
def list_jobs_v2(
    key: Key,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    cursor: uuid.UUID | None = None,
    status: JobStatus | None = None,
) -> dict[str, Any]:
    after = None
    if cursor is not None:
        after = svc.store.get_job(str(cursor), key.id)
        if after is None:
            raise InvalidRequest([("cursor", "Unknown cursor: pass the nextCursor of a previous page")])
    jobs = svc.store.list_jobs(key.id, status, limit + 1, after=after)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return {"items": [_list_item(j) for j in jobs], "nextCursor": jobs[-1].id if more else None}


@router.get("/v1/jobs", response_model=JobListV1, summary="List jobs, newest first (older API)")
def list_jobs_v1(
    key: Key,
    svc: Svc,
    take: Annotated[int, Query(ge=1, le=100)] = 10,
    skip: Annotated[int, Query(ge=0)] = 0,
    status: JobStatus | None = None,
) -> dict[str, Any]:
    jobs = svc.store.list_jobs(key.id, status, take, skip=skip)
    return {"items": [_list_item(j) for j in jobs], "total": svc.store.count_jobs(key.id, status)}


def _media_key(url: str) -> str:
    if errors := _media_url_errors("url", url):
        raise InvalidRequest(errors)
    return object_key(url)


def _base_url(request: Request, svc: Services) -> str:
    return (svc.settings.public_url or str(request.base_url)).rstrip("/")


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
    target = read_token(svc.secret, "put", token)
    if target is None:
        raise ApiProblem(403, "This upload URL is invalid or has expired; ask /v1/media/input for a new one.")
    key_id, name = target
    limit = svc.settings.max_input_bytes
    too_large = ApiProblem(413, f"The file is larger than the {limit / 1024**3:g} GiB limit.")
    if int(request.headers.get("content-length") or 0) > limit:
        raise too_large
    partial = svc.media.partial_path(key_id, name)
    size = 0
    try:
        with partial.open("wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                await run_in_threadpool(f.write, chunk)
        partial.replace(svc.media.path(key_id, name))
    finally:
        partial.unlink(missing_ok=True)
    await run_in_threadpool(svc.store.record_upload, key_id, name, size)
    return Response(status_code=200)


@router.get("/v1/media/download/{token}", summary="Download media from a pre-signed URL", responses={403: {}, 404: {}})
def media_download(token: str, svc: Svc) -> FileResponse:
    target = read_token(svc.secret, "get", token)
    if target is None:
        raise ApiProblem(403, "This download URL is invalid or has expired; ask /v1/media/output for a new one.")
    path = svc.media.path(*target)
    if not path.exists():
        raise ApiProblem(404, "This media no longer exists.")
    return FileResponse(path, media_type="application/octet-stream")
