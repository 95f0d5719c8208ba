"""The pyannoteAI JSON of a job, built in one place: the job GET, the job lists and the webhook body.

Plain functions of a stored job, so the store can freeze a webhook body in the transaction that ends
the job without depending on the dispatcher that sends it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from diarist.jobs.kinds import spec_of
from diarist.jobs.tables import RUNNING, SUCCEEDED, Job


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`, as the reference writes it: `2024-02-20T12:00:00.000Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def list_item(job: Job) -> dict[str, str]:
    """A job in `GET /v2/jobs` and `GET /v1/jobs`: `{id, status, createdAt}`, never its output."""
    return {"id": job.id, "status": job.status, "createdAt": timestamp(job.created_at)}


def webhook_body(job: Job) -> str:
    """`{jobId, status[, output]}` as compact JSON; output only for a succeeded job that did not ask for status only."""
    payload: dict[str, Any] = {"jobId": job.id, "status": job.status}
    if job.status == SUCCEEDED and not spec_of(job).webhook_status_only and job.output is not None:
        payload["output"] = job.output
    return json.dumps(payload, separators=(",", ":"))
