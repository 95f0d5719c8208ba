"""A succeeded job's output as more than JSON: its waveform peaks, its speakers' names and its export files."""

from __future__ import annotations

import gzip
import json
from typing import Annotated, Any, Literal

from fastapi import Body, Query, Request, Response
from fastapi.responses import JSONResponse

from diarist.api.errors import ApiProblem, InvalidRequest
from diarist.api.routes.base import NO_JOB, JobId, Key, Svc, own_job, router, speaker_names
from diarist.api.schemas import ApiError, Peaks, SpeakerNames, SpeakerRenames
from diarist.api.services import Services
from diarist.exports import FORMATS, apply_names, media_stem, output_speakers, render
from diarist.jobs.kinds import KINDS
from diarist.jobs.tables import SUCCEEDED, ApiKey, Job
from diarist.vocabulary import name_problem

ExportFormat = Literal[tuple(FORMATS)]


OUTPUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NO_JOB,
    409: {
        "model": ApiError,
        "description": "The job has no output (not succeeded, or expired), or is a voiceprint job",
    },
}


def _with_output(svc: Services, key: ApiKey, job_id: str) -> Job:
    """The key's job, if it succeeded and still has its output; else 404 or 409."""
    job = own_job(svc, key, job_id)
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
    job = own_job(svc, key, jobId)
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
    responses=NO_JOB,
)
def get_speakers(jobId: JobId, key: Key, svc: Svc) -> JSONResponse:
    job = own_job(svc, key, jobId)
    return JSONResponse(speaker_names(job) if job.status == SUCCEEDED and job.output is not None else {})


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
    if not KINDS[job.kind].has_speakers:
        raise ApiProblem(409, f"Job {jobId} is a {job.kind} job: it has no speakers to name.")
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
    return JSONResponse(speaker_names(job))


@router.get(
    "/v1/jobs/{jobId}/export",
    summary="Export a job's output as a file (diarist extension)",
    description="The output with the speakers' names (`PUT /v1/jobs/{jobId}/speakers`) as a file to save: JSON, "
    "RTTM, or SubRip, WebVTT and text subtitles, from the transcript when the job has one, else one cue per "
    "diarization turn. The same files as `diarist diarize --format`.",
    response_class=Response,
    responses={
        200: {
            "description": "The file, as an attachment named after the input file (`meeting.srt` for "
            "`media://meeting.wav`; the job id where the URL names no file); RTTM's recording id is that name",
            "content": {kind: {"schema": {"type": "string"}} for _ext, kind in FORMATS.values()},
        },
        **OUTPUT_RESPONSES,
    },
)
def export_job(
    jobId: JobId,
    key: Key,
    svc: Svc,
    format: Annotated[ExportFormat, Query(description="The file format")] = "json",
) -> Response:
    job = _with_output(svc, key, jobId)
    if format not in KINDS[job.kind].export_formats:
        raise ApiProblem(409, f"Job {jobId} is a {job.kind} job: it has no speaker turns for {format}, only json.")
    output = apply_names(job.output or {}, speaker_names(job))
    extension, kind = FORMATS[format]
    # Named after the input file, as the command line names its outputs.
    stem = media_stem(job.request.get("url"), job.id)
    headers = {"Content-Disposition": f'attachment; filename="{stem}.{extension}"'}
    return Response(render(output, format, uri=stem), media_type=kind, headers=headers)
