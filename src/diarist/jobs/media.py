"""Temporary media storage behind `media://` URLs, and the signed URLs that read and write it.

Files live under `<media dir>/<key id>/<sha256 of the object key>`: object keys may hold `/` and
`..`, so they never become paths themselves.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from diarist.private_files import private_dir

if TYPE_CHECKING:
    from diarist.jobs.store import Store

MEDIA_URL = re.compile(r"media://[a-zA-Z0-9\-_./]+")
KEY_ID = re.compile(r"[a-zA-Z0-9]{1,32}")  # the public part of an API key, as the store makes them
MAX_MEDIA_URL = 255
PART_SUFFIX = ".part"


def object_key(media_url: str) -> str:
    """`media://a/b.wav` -> `a/b.wav`; ValueError for anything else."""
    # fullmatch: `$` would also match before a final newline.
    if len(media_url) > MAX_MEDIA_URL or not MEDIA_URL.fullmatch(media_url):
        raise ValueError(
            f"must look like media://object-key (letters, digits, - _ . /), at most {MAX_MEDIA_URL} characters"
        )
    return media_url.removeprefix("media://")


class UploadsInFlight:
    """Bytes received so far by the uploads still arriving, per key.

    A key's storage quota counts them too: otherwise many parallel uploads, each within the
    quota alone, fill the disk with partial files before any of them is checked on completion.
    """

    def __init__(self) -> None:
        self._sizes: dict[str, dict[object, int]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def track(self, key_id: str) -> Iterator[Callable[[int], int]]:
        """A function to call with this upload's size so far; it answers the key's other uploads' bytes."""
        upload = object()

        def update(size: int) -> int:
            with self._lock:
                sizes = self._sizes.setdefault(key_id, {})
                sizes[upload] = size
                return sum(sizes.values()) - size

        try:
            yield update
        finally:
            with self._lock:
                sizes = self._sizes.get(key_id, {})
                sizes.pop(upload, None)
                if not sizes:
                    self._sizes.pop(key_id, None)


class MediaStore:
    """Uploaded files on the local disk, one folder per API key."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, key_id: str, key: str) -> Path:
        """The file of `media://<key>` of API key `key_id`; ValueError for a key id that is no such id."""
        if not KEY_ID.fullmatch(key_id):
            raise ValueError(f"invalid key id {key_id!r}")
        path = self.root / key_id / hashlib.sha256(key.encode()).hexdigest()
        # Both parts are checked above; this makes the promise explicit for whoever edits them next.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"media path outside {self.root}")
        return path

    def partial_path(self, key_id: str, key: str) -> Path:
        """Where an upload is written before it replaces the previous file in one rename."""
        final = self.path(key_id, key)
        private_dir(final.parent)
        return final.with_name(f"{final.name}.{secrets.token_hex(4)}{PART_SUFFIX}")

    def delete_stale_parts(self, older_than: float) -> int:
        """Delete uploads left half-written (by a crash) that nothing wrote to since `older_than` (epoch s)."""
        deleted = 0
        for path in self.root.glob(f"*/*{PART_SUFFIX}") if self.root.exists() else []:
            with contextlib.suppress(FileNotFoundError):  # the upload finished or failed meanwhile
                if path.stat().st_mtime < older_than:
                    path.unlink()
                    deleted += 1
        return deleted

    def delete_older_than(self, older_than: float) -> int:
        """Delete uploads written before `older_than` (epoch s) whatever the database says.

        With several replicas, the one that expires an upload's row deletes only its own copy;
        the replica holding the file (or an older copy replaced through another one) cleans up here.
        """
        deleted = 0
        for path in self.root.glob("*/*") if self.root.exists() else []:
            with contextlib.suppress(FileNotFoundError):
                if not path.name.endswith(PART_SUFFIX) and path.stat().st_mtime < older_than:
                    path.unlink()
                    deleted += 1
        return deleted

    def delete(self, key_id: str, key: str) -> None:
        self.path(key_id, key).unlink(missing_ok=True)


def signing_secret(store: Store, data_dir: Path) -> bytes:
    """The key that signs upload/download URLs, one for every replica and worker: kept in the database.

    The first start on a database stores this data dir's old `secret` file if there is one (a
    laptop's URLs handed out before the upgrade keep working), else a new random secret. The file
    is only read, never written: a downgrade finds it as it was.
    """
    path = data_dir / "secret"
    candidate = path.read_text().strip() if path.exists() else secrets.token_hex(32)
    return store.signing_secret(candidate).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: bytes, action: str, key_id: str, key: str, ttl_seconds: int) -> str:
    """A URL-safe token allowing one `action` ("put" or "get") on one object until it expires."""
    payload = _b64(json.dumps([action, key_id, key, int(time.time()) + ttl_seconds]).encode())
    signature = _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def read_token(secret: bytes, action: str, token: str) -> tuple[str, str] | None:
    """(key id, object key) for a valid, unexpired token for `action`, else None.

    Even a correctly signed token must name a well-formed key id and object key: the secret
    signs what the server meant, and a leaked secret must still not reach outside the media folder.
    """
    if not secret:  # the server has not read its secret yet: nothing it signs can be checked
        return None
    payload, _, signature = token.partition(".")
    expected = _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())
    # Bytes: compare_digest refuses str with characters outside ASCII.
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    try:
        token_action, key_id, key, expires = json.loads(_unb64(payload))
        if not (isinstance(key_id, str) and isinstance(key, str) and isinstance(expires, int | float)):
            return None
        object_key(f"media://{key}")
    except (ValueError, TypeError):
        return None
    if token_action != action or expires < time.time() or not KEY_ID.fullmatch(key_id):
        return None
    return key_id, key


# The first bytes of the containers a browser plays, and their media types: the download route names
# the right one so that an <audio> element plays an upload (it refuses application/octet-stream in
# some browsers). Uploads carry no type of their own, so it is read from the file.
SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (8, b"WAVE", "audio/wav"),
    (0, b"fLaC", "audio/flac"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (4, b"ftyp", "audio/mp4"),
    (0, b"\x1a\x45\xdf\xa3", "audio/webm"),  # Matroska / WebM
    (0, b"FORM", "audio/aiff"),
    (0, b"#!AMR", "audio/amr"),
)


def media_type(path: Path) -> str:
    """The media type of an uploaded file from its first bytes; application/octet-stream when unknown."""
    with open(path, "rb") as f:
        head = f.read(16)
    for offset, magic, kind in SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return kind
    # An MPEG audio frame without an ID3 tag starts with an 11-bit sync word; ADTS AAC has 12 bits and layer 0.
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/aac" if head[1] & 0x06 == 0 else "audio/mpeg"
    return "application/octet-stream"
