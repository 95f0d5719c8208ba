"""Media: pre-signed upload and download URLs, and the uploads and downloads they permit."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from diarist.api.errors import ApiProblem, InvalidRequest
from diarist.api.routes.base import Key, Svc, public_base, read_media_url, router
from diarist.api.schemas import ApiError, MediaRequest, MediaResponse, ValidationErrorResponse
from diarist.api.services import Services
from diarist.jobs.intake import UploadTooLargeError, check_upload_size, storage_quota, store_upload
from diarist.jobs.media import make_token, media_type, read_token
from diarist.jobs.store import StorageQuotaError

MAX_RANGES = FileResponse.max_ranges  # more parts than this are answered with the whole file


def _media_key(url: str) -> str:
    errors: list[tuple[str, str]] = []
    name = read_media_url(url, errors)
    if name is None:
        raise InvalidRequest(errors)
    return name


def _signed_target(svc: Services, action: str, token: str, refusal: str) -> tuple[str, str]:
    """(key id, object key) of a pre-signed URL's token, if it is valid and its key still live; else 403."""
    target = read_token(svc.secret, action, token)
    key = None if target is None else svc.store.get_key(target[0])
    if target is None or key is None or key.revoked_at is not None:
        raise ApiProblem(403, refusal)
    return target


@router.post("/v1/media/input", status_code=201, response_model=MediaResponse, summary="Get upload URL")
def media_input(body: MediaRequest, request: Request, key: Key, svc: Svc) -> MediaResponse:
    token = make_token(svc.secret, "put", key.id, _media_key(body.url), svc.settings.upload_url_ttl_seconds)
    return MediaResponse(url=f"{public_base(request, svc)}/v1/media/upload/{token}")


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
    return MediaResponse(url=f"{public_base(request, svc)}/v1/media/download/{token}")


@router.put(
    "/v1/media/upload/{token}",
    summary="Upload media to a pre-signed URL (no API key: the URL is the permission)",
    responses={403: {"model": ApiError}, 413: {"model": ApiError}},
)
async def media_upload(token: str, request: Request, svc: Svc) -> Response:
    refusal = "This upload URL is invalid or has expired, or its key was revoked; ask /v1/media/input for a new one."
    key_id, name = await run_in_threadpool(_signed_target, svc, "put", token, refusal)
    quota = await run_in_threadpool(storage_quota, svc.store, key_id, svc.settings.max_storage_bytes_per_key)
    # The quota counts the key's other uploads: this one replaces any file of the same name.
    used = await run_in_threadpool(svc.store.storage_used, key_id, name) if quota else 0
    with svc.uploads.track(key_id) as arriving:

        def check(size: int) -> None:
            # The key's other uploads still arriving count as stored: they will be, once complete.
            check_upload_size(size, svc.settings.max_input_bytes, used + arriving(size), quota)

        try:
            check(int(request.headers.get("content-length") or 0))
            origin = svc.settings.own_internal_url
            await store_upload(request.stream(), svc.store, svc.media, (key_id, name), quota, check, origin)
        except (UploadTooLargeError, StorageQuotaError) as e:
            raise ApiProblem(413, str(e)) from None
    return Response(status_code=200)


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
    """Refuse, in the API's error shapes, a Range header that FileResponse would refuse in plain text.

    The same decisions as Starlette's: only `bytes`; parts that are not numbers are skipped; no
    part left is malformed (400); a part starting past the end is unsatisfiable (416).
    """
    if header is None:
        return
    unit, equals, parts = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        raise InvalidRequest([("Range", "Malformed Range header: only bytes ranges are served")])
    if parts.count(",") >= MAX_RANGES:
        return  # FileResponse answers the whole file
    ranges = [r for part in parts.split(",") if (r := _byte_range(part.strip(), size)) is not None]
    if not ranges:
        raise InvalidRequest([("Range", "Malformed Range header: range must be requested")])
    if any(not 0 <= start < size for start, _ in ranges):
        raise ApiProblem(
            416, f"The range {header!r} is outside the file ({size} bytes).", {"Content-Range": f"bytes */{size}"}
        )
    if any(start >= end for start, end in ranges):
        raise InvalidRequest([("Range", "Malformed Range header: start must be less than end")])


def _byte_range(part: str, size: int) -> tuple[int, int] | None:
    """`first-last`, `first-` or `-suffix` as [start, end) in a file of `size` bytes; None if not a range."""
    first, dash, last = (text.strip() for text in part.partition("-"))
    if not dash or not (first or last):
        return None
    try:
        start = int(first) if first else max(size - int(last), 0)
        end = int(last) + 1 if first and last and int(last) < size else size
    except ValueError:
        return None
    return start, end
