"""Runs never overlap (B4): an exclusive, non-blocking flock on a lock file in the backup dir.

The kernel drops the lock when its holder exits, however it exits, so a crashed run never leaves
a stale lock. The file itself stays (removing a flock file races with a waiting locker); it holds
who took the lock, for the message of the run that finds it taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from backup.errors import Overlap, from_os_error

LOCK_NAME = ".backup.lock"


class RunLock:
    def __init__(self, directory: Path, name: str = LOCK_NAME):
        self.path = directory / name
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise from_os_error(exc, f"opening lock file {self.path}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise Overlap(
                f"another backup run holds {self.path}"
                + (f" ({holder})" if holder else "")
                + "; this run does nothing"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise from_os_error(exc, f"locking {self.path}") from exc
        self._fd = fd
        note = (
            f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{datetime.now(UTC).isoformat(timespec='seconds').replace('+00:00', 'Z')}"
        )
        try:  # informative only: a full disk must not turn a lock into a failure
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
