"""Taking work in: a job's submit and an upload's storing (a live stream's recording too), with their
checks that are not HTTP.

The routes translate HTTP into these calls and their errors back into HTTP; these functions know
the store, the media folder, the queue and the job kinds, and nothing of requests or responses.
"""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
from anyio import to_thread

from diarist.audio import duration_seconds
from diarist.errors import AudioError, DiaristError
from diarist.jobs.kinds import KINDS
from diarist.jobs.media import MediaStore
from diarist.jobs.queue import JobQueue
from diarist.jobs.spec import JobSpec
from diarist.jobs.store import Store, storage_quota_message
from diarist.jobs.tables import ApiKey, Job
from diarist.private_files import disk_full_errors, open_private


class MediaNotFoundError(DiaristError):
    """A media:// input that was never uploaded, or has expired."""


class InputLimitError(DiaristError):
    """An input over its kind's size or length limit, known at submit."""


class UploadTooLargeError(DiaristError):
    """An upload over the size limit, or one that would take its key over its storage quota."""


def submit(store: Store, media: MediaStore, queue: JobQueue, key: ApiKey, spec: JobSpec, name: str | None) -> Job:
    """Queue a checked job; `name` is the object key of a media:// input (None for a URL).

    MediaNotFoundError for an upload that is not there, InputLimitError past the kind's limits,
    QuotaExceededError past the key's audio quota.
    """
    kind = KINDS[spec.kind]
    upload = None if name is None else store.get_media(key.id, name)
    if name is not None and upload is None:
        raise MediaNotFoundError(f"Media {spec.url} not found: upload it first (uploads expire after a while).")
    if upload is not None and kind.max_input_bytes is not None and upload.size > kind.max_input_bytes:
        size, limit = upload.size / 1024**2, kind.max_input_bytes / 1024**2
        raise InputLimitError(f"The file holds {size:.0f} MiB; a {kind.name} takes at most {limit:g} MiB")
    seconds = known_seconds(media, key, name, always=kind.max_input_seconds is not None)
    if kind.max_input_seconds is not None and round(seconds, 1) > kind.max_input_seconds:
        raise InputLimitError(
            f"The audio lasts {seconds:.1f} s; a {kind.name} takes at most {kind.max_input_seconds:g} s of one "
            "person speaking"
        )
    return queue.submit(key.id, spec, seconds, unlimited=key.quota_seconds is None)


def known_seconds(media: MediaStore, key: ApiKey, name: str | None, always: bool = False) -> float:
    """An upload's duration from its container header, held on the quota at submit.

    0 when unknown: a URL (the worker holds it once downloaded) or a file that is not audio
    (its job fails). Read only for a key with a quota, unless `always`.
    """
    if (key.quota_seconds is None and not always) or name is None:
        return 0.0
    try:
        return duration_seconds(media.path(key.id, name)) or 0.0
    except AudioError:
        return 0.0


def storage_quota(store: Store, key_id: str, default: int) -> int:
    """Bytes of uploads the key may hold (its own quota, else `default`); 0: no limit."""
    key = store.get_key(key_id)
    own = None if key is None else key.storage_quota_bytes
    return default if own is None else own


def check_upload_size(size: int, limit: int, used: int, quota: int) -> None:
    """UploadTooLargeError for a file over the size limit, or one that would take the key over its quota."""
    if size > limit:
        raise UploadTooLargeError(f"The file is larger than the {limit / 1024**3:g} GiB limit.")
    if quota and used + size > quota:
        raise UploadTooLargeError(storage_quota_message(used + size, quota))


async def store_upload(
    chunks: AsyncIterator[bytes],
    store: Store,
    media: MediaStore,
    upload: tuple[str, str],
    quota: int,
    check: Callable[[int], None],
    origin: str | None,
) -> None:
    """Write the (key id, object key) `upload` beside its final place, record it, then move it there.

    `check` hears the size so far and raises to refuse the file; nothing is left on failure.
    StorageQuotaError when parallel uploads took the key over its quota meanwhile.
    """
    key_id, name = upload
    with disk_full_errors("The server's disk is full; the upload was not kept."):
        part = media.partial_path(key_id, name)
        try:
            await _receive(chunks, part, check)
            await to_thread.run_sync(_keep_upload, store, media, (key_id, name), part, quota, origin)
        finally:
            part.unlink(missing_ok=True)


def _keep_upload(
    store: Store, media: MediaStore, upload: tuple[str, str], part: Path, quota: int, origin: str | None
) -> None:
    """Make the written `part` the (key id, object key) `upload`: recorded first, with the storage quota
    checked again in the same transaction (parallel uploads), then moved into place. The origin tells
    workers on other machines where to fetch the file from."""
    key_id, name = upload
    store.record_upload(key_id, name, part.stat().st_size, quota, origin)
    part.replace(media.path(key_id, name))


async def _receive(chunks: AsyncIterator[bytes], path: Path, check: Callable[[int], None]) -> None:
    """Stream `chunks` into `path` (0600), calling `check` with the size so far."""
    size = 0
    with open_private(path) as f:
        async for chunk in chunks:
            size += len(chunk)
            check(size)
            await to_thread.run_sync(f.write, chunk)


class StreamRecording:
    """A live stream's audio, written as it arrives: a 16-bit, 16 kHz WAV beside its final media place."""

    def __init__(self, media: MediaStore, key_id: str, stream_id: str):
        self.media, self.key_id = media, key_id
        self.name = f"live-{stream_id}.wav"  # its media:// name
        self.part = media.partial_path(key_id, self.name)
        self._file = open_private(self.part)
        self._wav = wave.open(self._file, "wb")  # noqa: SIM115 -- open for the whole stream, closed by close()
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(16000)
        self.seconds = 0.0

    def write(self, frame: bytes) -> None:
        """Append a frame of pcm_f32le."""
        samples = np.clip(np.frombuffer(frame, dtype="<f4"), -1.0, 1.0)
        self._wav.writeframes((samples * 32767).astype("<i2").tobytes())
        self.seconds += len(samples) / 16000

    def close(self) -> None:
        if not self._file.closed:
            self._wav.close()  # writes the header's sizes
            self._file.close()

    def discard(self) -> None:
        self.close()
        self.part.unlink(missing_ok=True)


def submit_recording(
    store: Store,
    queue: JobQueue,
    key: ApiKey,
    recording: StreamRecording,
    spec: JobSpec,
    quota: int,
    origin: str | None,
) -> Job:
    """Keep a stream's recording as an upload and queue `spec` on it (its url the recording's media://).

    StorageQuotaError, QuotaExceededError and the other errors of `submit` when it cannot be; the
    recording is removed then.
    """
    recording.close()
    try:
        with disk_full_errors("The server's disk is full; the stream's audio was not kept."):
            _keep_upload(store, recording.media, (key.id, recording.name), recording.part, quota, origin)
    finally:
        recording.part.unlink(missing_ok=True)
    return submit(store, recording.media, queue, key, spec, recording.name)
