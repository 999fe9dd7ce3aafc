"""The free-space check before a run (X1: disk full is detected, not guessed): the databases'
pg_database_size times a factor (a custom-format dump is compressed and has no indexes, so it is
much smaller than the database), plus a reserve that must stay free afterwards (the backup volume
often shares its disk with the database itself)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from backup.errors import DiskFull, from_os_error


def free_bytes(directory: Path) -> int:
    try:
        st = os.statvfs(directory)
    except OSError as exc:
        raise from_os_error(exc, f"statvfs {directory}") from exc
    return st.f_bavail * st.f_frsize


def required_bytes(database_sizes: dict[str, int], factor: float, reserve: int) -> int:
    return int(sum(database_sizes.values()) * factor) + reserve


def check(
    directory: Path,
    database_sizes: dict[str, int],
    factor: float,
    reserve: int,
    free: Callable[[Path], int] = free_bytes,
) -> int:
    """Raise DiskFull when the estimate does not fit; return the free bytes."""
    need, have = required_bytes(database_sizes, factor, reserve), free(directory)
    if have < need:
        raise DiskFull(
            f"{directory} has {have} bytes free; this run needs an estimated {need} "
            f"(databases {sum(database_sizes.values())} bytes x {factor:g} + reserve {reserve})"
        )
    return have
