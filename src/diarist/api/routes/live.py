"""Live streams: `POST /v1/live` hands out a socket URL, `GET /v1/live/{id}` reads a stream, and the
WebSocket carries the audio in and the speaker events out (pyannoteAI's protocol, docs/api.md).

The socket's rules, in the order a client meets them:
- its URL's token opens it once, within `live_token_ttl_seconds`, while the key is live; a browser's
  Origin must be the server's own (or listed in `live_allowed_origins`);
- binary frames of exactly 6400 bytes (100 ms of pcm_f32le, 16 kHz, mono); another size gets an
  `error` event and is dropped;
- no faster than real time: audio more than 5 s ahead of the clock closes the stream;
- `{"type": "end_of_stream"}` flushes the last events and closes with 1000 (status `done`); a
  client that goes away, stays silent for `live_idle_timeout`, exceeds the quota or the 24 h limit,
  or does not read its events ends the stream as `error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import socket
import time
from typing import Annotated, Any

from fastapi import Path as PathParameter
from fastapi import Query, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from diarist.api.errors import ApiProblem, InvalidRequest, deny_socket
from diarist.api.routes.base import Key, Svc, check_field_url, public_base, router
from diarist.api.schemas import ApiError, CreateStream, Stream, StreamCreated
from diarist.api.services import Services
from diarist.errors import DiaristError
from diarist.jobs.intake import StreamRecording, storage_quota, submit_recording
from diarist.jobs.live import FRAME_BYTES, FRAME_SECONDS, LiveSession
from diarist.jobs.spec import LiveSpec
from diarist.jobs.store import LiveCapError
from diarist.jobs.tables import STREAM_DONE, STREAM_ERROR, ApiKey, LiveStream

log = logging.getLogger("diarist.api")
MAX_AHEAD_SECONDS = 5.0  # audio a client may send ahead of the clock (pyannoteAI's buffer)
TOUCH_SECONDS = 5.0  # how often a running stream's record is refreshed and its key checked
FINISH_TIMEOUT = 60.0  # seconds the engine has to decide the rest of a stream after end_of_stream
StreamId = Annotated[str, PathParameter(description="The id that POST /v1/live answered")]


def replica_name(svc: Services) -> str:
    """This replica, as the streams it runs record it: stable across its restarts."""
    return f"{socket.gethostname()}:{svc.settings.port}"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def stream_json(stream: LiveStream) -> dict[str, Any]:
    """A stream as `GET /v1/live/{id}` answers it."""
    answer = Stream(
        id=stream.id,
        status=stream.status,
        startedAt=stream.started_at,
        completedAt=stream.completed_at,
        jobId=stream.job_id,
    ).model_dump(mode="json")
    if stream.job_id is None:  # a diarist extension: absent rather than null
        del answer["jobId"]
    return answer


@router.post(
    "/v1/live",
    response_model=StreamCreated,
    summary="Create a new live stream",
    description="Returns the WebSocket URL to stream audio to; its token opens it once, within a minute.",
    responses={429: {"model": ApiError, "description": "Too many live streams open for this key or server"}},
)
def create_stream(request: Request, key: Key, svc: Svc, body: CreateStream | None = None) -> JSONResponse:
    settings = svc.settings
    if settings.live_max_streams == 0:
        raise ApiProblem(501, "Live streaming is turned off on this server (live_max_streams is 0).")
    body = body or CreateStream()
    if body.webhook is not None:
        errors = check_field_url("webhook", body.webhook, svc)
        if not body.keepAudio:
            errors.append(("webhook", "Only with keepAudio: it reports the end of the offline job on the kept audio"))
        if errors:
            raise InvalidRequest(errors)
    token = secrets.token_urlsafe(32)
    try:
        stream = svc.store.create_stream(
            key.id,
            LiveSpec(body.model, body.latency, body.keepAudio, body.webhook).to_json(),
            _token_hash(token),
            settings.live_token_ttl_seconds,
            replica_name(svc),
            settings.live_max_streams_per_key,
            settings.live_max_streams,
        )
    except LiveCapError as e:
        raise ApiProblem(429, str(e), {"Retry-After": "10"}) from None
    base = public_base(request, svc)
    socket_base = "wss" + base[len("https") :] if base.startswith("https") else "ws" + base[len("http") :]
    return JSONResponse({"id": stream.id, "url": f"{socket_base}/v1/live/{stream.id}/socket?token={token}"})


@router.get(
    "/v1/live/{stream_id}",
    response_model=Stream,
    summary="Get a live stream by ID",
    responses={404: {"model": ApiError, "description": "No such stream"}},
)
def get_stream(stream_id: StreamId, key: Key, svc: Svc) -> JSONResponse:
    stream = svc.store.get_stream(stream_id, key.id)
    if stream is None:
        raise ApiProblem(404, f"Stream {stream_id} not found.")
    return JSONResponse(stream_json(stream))


def _origin_allowed(websocket: WebSocket, svc: Services) -> bool:
    """No Origin (not a browser), the server's own, or one the operator listed."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    host = websocket.headers.get("host", "")
    own = {f"http://{host}", f"https://{host}"}
    if svc.settings.public_url:
        own.add(svc.settings.public_url.rstrip("/"))
    return origin in own or origin in svc.settings.live_allowed_origins


class _Ended(Exception):
    """The stream ends now, with this status and (for errors) the message the client is sent."""

    def __init__(self, status: str, message: str | None = None, code: int = 1000):
        super().__init__(message or status)
        self.status, self.message, self.code = status, message, code


@router.websocket("/v1/live/{stream_id}/socket")
async def live_socket(websocket: WebSocket, stream_id: str, token: Annotated[str, Query()] = "") -> None:
    svc: Services = websocket.app.state.services
    if not _origin_allowed(websocket, svc):
        await deny_socket(websocket, 403, "This stream cannot be opened from a page on another origin.")
        return
    if svc.live.open_streams >= svc.settings.live_max_streams:
        await deny_socket(websocket, 429, "This server has as many live streams open as it can run.")
        return
    # Tokens are guessed no faster than keys: refusals count on the address's failure limit.
    client, per_client = websocket.client.host if websocket.client else "", svc.settings.auth_failures_per_minute
    blocked = await run_in_threadpool(svc.failures.peek, client, per_client) if per_client > 0 else None
    if blocked is not None and not blocked.allowed:
        await deny_socket(websocket, 429, "Too many refused stream URLs from this address; try again later.")
        return
    stream = await run_in_threadpool(svc.store.claim_stream, stream_id, _token_hash(token), replica_name(svc))
    if stream is None:
        if per_client > 0:
            await run_in_threadpool(svc.failures.check, client, per_client)
        refused = "This stream's URL is not valid: it was used already, has expired or is wrong."
        await deny_socket(websocket, 403, refused)
        return
    key = await run_in_threadpool(svc.store.get_key, stream.key_id)
    if key is None or key.revoked_at is not None:
        await run_in_threadpool(svc.store.end_stream, stream_id, STREAM_ERROR, 0.0, "The API key was revoked.")
        await deny_socket(websocket, 401, "The API key of this stream was revoked.")
        return
    spec = LiveSpec.from_json(stream.options)
    quota = None if key.quota_seconds is None else key.quota_seconds - key.used_seconds - key.reserved_seconds
    recording = StreamRecording(svc.media, key.id, stream_id) if spec.keep_audio else None
    await websocket.accept()
    accepted = time.monotonic()  # the client may send from here on, while the engine opens the session
    session = await svc.live.open(stream_id, spec.model, spec.latency)
    session.recording = recording
    try:
        status, message, code = await _run(websocket, session, svc, key.id, quota, accepted)
    finally:
        session.close()
    # Recorded before the close, so that a client that saw its stream end can open the next at once.
    await run_in_threadpool(svc.store.end_stream, stream_id, status, session.sent_seconds, message)
    await _close(websocket, code)
    if recording is not None:
        await run_in_threadpool(_diarize_recording, svc, key, stream_id, recording, spec)


def _diarize_recording(svc: Services, key: ApiKey, stream_id: str, recording: StreamRecording, spec: LiveSpec) -> None:
    """Queue the offline diarization of a stream's kept audio (none for under a second of it)."""
    if recording.seconds < 1.0:
        recording.discard()
        return
    job_spec = spec.recording_spec(f"media://{recording.name}")
    quota = storage_quota(svc.store, key.id, svc.settings.max_storage_bytes_per_key)
    try:
        job = submit_recording(svc.store, svc.queue, key, recording, job_spec, quota, svc.settings.own_internal_url)
    except DiaristError as e:  # the key's storage or audio quota, a full disk: the live events stand
        log.warning("stream %s: its audio was not diarized offline: %s", stream_id, e)
        return
    svc.store.set_stream_job(stream_id, job.id)


async def _run(
    websocket: WebSocket, session: LiveSession, svc: Services, key_id: str, quota: float | None, accepted: float
) -> tuple[str, str | None, int]:
    """Carry one stream, accepted at monotonic time `accepted`, until it ends; its final status, error
    message and close code."""
    settings = svc.settings
    outbox: asyncio.Queue = asyncio.Queue(maxsize=settings.live_send_queue)
    receiver = asyncio.create_task(
        _receive_audio(websocket, session, settings.live_idle_timeout, settings.live_max_hours, quota, accepted)
    )
    pump = asyncio.create_task(_pump_events(session, outbox))
    keeper = asyncio.create_task(_keep_alive(session, svc, key_id))
    helpers = [asyncio.create_task(_send_events(websocket, outbox)), keeper]
    try:
        await asyncio.wait({receiver, pump, keeper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (pump, keeper):  # the engine failed, the client stopped reading, the key was revoked
            if task.done():
                task.result()
        receiver.result()  # raises _Ended unless the client sent end_of_stream
        session.end()
        try:
            await asyncio.wait_for(pump, FINISH_TIMEOUT)
        except TimeoutError:
            raise _Ended(STREAM_ERROR, "The live engine did not finish the stream in time.", 1011) from None
        await _flush(outbox)
        return STREAM_DONE, None, 1000
    except _Ended as e:
        if e.message is not None and websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(asyncio.QueueFull):
                outbox.put_nowait({"type": "error", "message": e.message})
            await _flush(outbox)
        return e.status, e.message, e.code
    finally:
        for task in (receiver, pump, *helpers):
            task.cancel()


async def _flush(outbox: asyncio.Queue) -> None:
    """Give the events still queued a moment to reach the client."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(outbox.join(), 5.0)


async def _close(websocket: WebSocket, code: int) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await websocket.close(code)


async def _receive_audio(
    websocket: WebSocket, session: LiveSession, idle: float, max_hours: float, quota: float | None, started: float
) -> None:
    """Forward the client's frames until end_of_stream; raises _Ended for every other way out. Real time
    counts from `started`, when the socket was accepted: frames sent while the engine was starting are
    read at once, and are not ahead of it."""
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), idle)
        except TimeoutError:
            raise _Ended(STREAM_ERROR, f"No audio for {idle:g} s: the stream was closed.", 1001) from None
        if message["type"] == "websocket.disconnect":
            raise _Ended(STREAM_ERROR, "The client went away before end_of_stream.")
        if message.get("bytes") is not None:
            frame = message["bytes"]
            if len(frame) != FRAME_BYTES:
                await session.replies.put(("reject", "Invalid chunk size"))
                continue
            if session.sent_seconds + FRAME_SECONDS > time.monotonic() - started + MAX_AHEAD_SECONDS:
                raise _Ended(STREAM_ERROR, "Audio is arriving faster than real time: send 100 ms every 100 ms.", 1008)
            if session.sent_seconds >= max_hours * 3600:
                raise _Ended(STREAM_ERROR, f"The stream reached its limit of {max_hours:g} hours.", 1008)
            if quota is not None and session.sent_seconds >= quota:
                raise _Ended(STREAM_ERROR, "This key's audio quota is used up.", 1008)
            session.feed(frame)
            if session.recording is not None:
                session.recording.write(frame)
            continue
        try:
            command = json.loads(message.get("text") or "")
        except ValueError:
            command = None
        if isinstance(command, dict) and command.get("type") == "end_of_stream":
            return
        await session.replies.put(("reject", 'Unknown message: send audio frames or {"type": "end_of_stream"}'))


async def _pump_events(session: LiveSession, outbox: asyncio.Queue) -> None:
    """Move the engine's replies to the client's queue until the stream's last events; a client that
    lets `live_send_queue` events pile up unread is ended."""
    while True:
        kind, *rest = await session.replies.get()
        if kind == "error":
            raise _Ended(STREAM_ERROR, rest[0], 1011)
        # The engine's events are already in the protocol's shape (SpeakerEvent.to_json).
        events = [{"type": "error", "message": rest[0]}] if kind == "reject" else rest[0]
        for event in events:
            try:
                outbox.put_nowait(event)
            except asyncio.QueueFull:
                raise _Ended(STREAM_ERROR, None, 1008) from None
        if kind == "ended":
            return


async def _send_events(websocket: WebSocket, outbox: asyncio.Queue) -> None:
    while True:
        event = await outbox.get()
        try:
            await websocket.send_text(json.dumps(event))
        finally:
            outbox.task_done()


async def _keep_alive(session: LiveSession, svc: Services, key_id: str) -> None:
    """Refresh the stream's record (so no reaper ends it) while its key stays live; raises _Ended once
    the key is revoked."""
    while True:
        await asyncio.sleep(TOUCH_SECONDS)
        await run_in_threadpool(svc.store.touch_stream, session.stream_id, session.sent_seconds)
        key = await run_in_threadpool(svc.store.get_key, key_id)
        if key is None or key.revoked_at is not None:
            raise _Ended(STREAM_ERROR, "The API key of this stream was revoked.", 1008)
