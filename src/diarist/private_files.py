"""The data dir is private to the service's user: folders 0700, files 0600, whatever the umask.

The database holds webhook secrets in clear and uploads are other people's audio, so nothing
under the data dir may be readable by other local users.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from diarist.errors import StorageFullError

log = logging.getLogger("diarist.files")
DIR_MODE, FILE_MODE = 0o700, 0o600
PRIVATE_UMASK = 0o077  # what the server runs with, so files made by SQLite and ffmpeg are private too


def private_dir(path: Path) -> Path:
    """Make `path` and any missing parents as 0700 folders; an existing folder is left as it is."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another thread or process
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> None:
    """Create `path` empty as 0600 unless it exists (then it is left as it is)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        return
    os.chmod(path, FILE_MODE)


def open_private(path: Path) -> BinaryIO:
    """Open a new file for binary writing as 0600, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "wb")


@contextmanager
def disk_full_errors(message: str) -> Iterator[None]:
    """Raise StorageFullError(message) for a write that failed because the disk (or the user's
    disk quota) has no room left."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFullError(message) from e
        raise


def too_open(root: Path) -> list[Path]:
    """Everything under `root` (itself included) that its group or other users may access."""
    found = []
    for folder, _subfolders, files in os.walk(root):
        for path in [Path(folder)] + [Path(folder) / name for name in files]:
            with contextlib.suppress(FileNotFoundError):  # deleted while we look
                if path.lstat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    found.append(path)
    return found


def warn_if_open(root: Path) -> None:
    """Log one warning when anything under the data dir is readable by other users."""
    wide = too_open(root)
    if wide:
        log.warning(
            "%d paths under %s can be accessed by other users (e.g. %s); run `chmod -R go-rwx %s`",
            len(wide),
            root,
            wide[0],
            root,
        )
