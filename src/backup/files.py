"""Files that appear under their final name only when complete (B5 modes, X1 disk-full detection).

An AtomicFile is written under a hidden temporary name (`.NAME.partial`) and renamed by commit()
after an fsync; abort() removes it. Every OSError becomes a DiskFull (ENOSPC/EDQUOT, by errno) or a
StorageError, so "disk full" is detected, never guessed.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Protocol

from backup.errors import from_os_error

FILE_MODE = 0o640  # owner rw, group r, nothing for others (B5)
PARTIAL = re.compile(r"\.(?P<name>.+)\.partial")


class Writer(Protocol):
    """What a dump is streamed into (a fake in the unit tests)."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


def partial_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial")


class AtomicFile:
    def __init__(self, final: Path, mode: int = FILE_MODE):
        self.final = final
        self.tmp = partial_name(final)
        self.size = 0
        self._fd: int | None = None
        try:
            self.tmp.unlink(missing_ok=True)  # a leftover of a killed run, never a final file
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            os.fchmod(fd, mode)  # exact mode whatever the umask
        except OSError as exc:
            raise from_os_error(exc, f"creating {self.tmp}") from exc
        self._fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self.size += n
        except OSError as exc:
            raise from_os_error(exc, f"writing {self.tmp}") from exc

    def commit(self) -> None:
        """fsync, close and rename to the final name; the directory entry is synced too."""
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            os.rename(self.tmp, self.final)
            sync_dir(self.final.parent)
        except OSError as exc:
            self.abort()
            raise from_os_error(exc, f"completing {self.final}") from exc

    def abort(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type, *rest: object) -> None:
        if exc_type is not None or self._fd is not None:
            self.abort()


def write_atomic(final: Path, data: bytes, mode: int = FILE_MODE) -> None:
    with AtomicFile(final, mode) as f:
        f.write(data)
        f.commit()


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partials(directory: Path) -> list[str]:
    """Remove `.NAME.partial` files left by a run that was killed (call only under the run lock:
    then no run is writing one)."""
    removed = []
    for p in directory.iterdir():
        if PARTIAL.fullmatch(p.name) and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                removed.append(p.name)
            except OSError:
                pass
    return removed
