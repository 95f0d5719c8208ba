"""What every resource's routes share: the key dependency, the services, operation ids and 405s."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Security
from fastapi import Path as PathParameter
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from diarist.api.auth import current_key
from diarist.api.errors import ApiProblem
from diarist.api.schemas import ApiError
from diarist.api.services import Services, services
from diarist.exports import default_names
from diarist.jobs.kinds import KINDS
from diarist.jobs.media import object_key
from diarist.jobs.tables import ApiKey, Job
from diarist.net import UrlRefused, check_url

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
    "create_stream": "createStream",
    "get_stream": "getStream",
}
NO_JOB: dict[int | str, dict[str, Any]] = {404: {"model": ApiError, "description": "No such job"}}


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


# One router for every resource's API routes, so a 405 sees all the methods of a path.
router = APIRouter(route_class=ApiRoute, generate_unique_id_function=operation_id)


# Declares the `api-key` bearer scheme in the OpenAPI (the Authorize button of /docs); the check is current_key's.
bearer = HTTPBearer(scheme_name="api-key", bearerFormat="API key", auto_error=False)


async def authenticated(key: Annotated[ApiKey, Depends(current_key)], _: Annotated[Any, Security(bearer)]) -> ApiKey:
    """The caller's key, for routes that need one."""
    # This and the other dependencies only read the request: async, so FastAPI runs them on the event
    # loop; a plain `def` would cost each request a hop through the thread pool per dependency.
    return key


Key = Annotated[ApiKey, Depends(authenticated)]
Svc = Annotated[Services, Depends(services)]
SUBMITS = " or ".join(f"POST /v1/{kind}" for kind in KINDS)
JobId = Annotated[str, PathParameter(description=f"The jobId that {SUBMITS} answered")]


def read_media_url(url: str, errors: list[tuple[str, str]]) -> str | None:
    """The object key of the media:// URL in the `url` field, parsed once; None, with the reason added
    to `errors`, for a malformed one."""
    try:
        return object_key(url)
    except ValueError as e:
        errors.append(("url", f"Invalid media URL: {e}"))
        return None


def check_field_url(field: str, url: str, svc: Services) -> list[tuple[str, str]]:
    """The request field's URL refused by the server's fetch policy (SSRF), as a 400's entry; [] if allowed."""
    try:
        check_url(url, svc.policy)
    except UrlRefused as e:
        return [(field, str(e))]
    return []


def public_base(request: Request, svc: Services) -> str:
    """The server's address as its clients reach it: `public_url`, else the request's own."""
    return (svc.settings.public_url or str(request.base_url)).rstrip("/")


def own_job(svc: Services, key: ApiKey, job_id: str) -> Job:
    """The key's job; 404 for another key's or an unknown one."""
    job = svc.store.get_job(job_id, key.id)
    if job is None:
        raise ApiProblem(404, f"Job {job_id} not found.")
    return job


def speaker_names(job: Job) -> dict[str, str]:
    """The names a job's speakers go by: an identify job's matches, overridden by the user's own."""
    return default_names(job.output) | (job.speaker_names or {})
