"""Failures of a backup or restore, each with the result label (log line, metric) and exit code
it maps to. One exception class per exit code, so the mapping lives in exactly one place."""

from __future__ import annotations

import errno

OK = 0


class BackupError(Exception):
    result = "error"
    exit_code = 5


class DatabaseError(BackupError):
    """Connection, authentication or a client tool (pg_dump, psql, pg_restore) failing."""

    result = "db_error"
    exit_code = 1


class DiskFull(BackupError):
    """Detected: a write failed with ENOSPC/EDQUOT, or the free-space check before the run."""

    result = "disk_full"
    exit_code = 2


class Overlap(BackupError):
    """Another run holds the lock."""

    result = "overlap"
    exit_code = 3


class ConfigError(BackupError):
    result = "config_error"
    exit_code = 4


class StorageError(BackupError):
    """A file operation failed for a reason other than a full disk."""

    result = "io_error"
    exit_code = 5


class Mismatch(BackupError):
    """Restore: the restored database differs from its source."""

    result = "mismatch"
    exit_code = 6


class Interrupted(BackupError):
    result = "interrupted"
    exit_code = 7


EXIT_CODES = {
    0: "success",
    1: "database error: connection, authentication, a failing pg_dump/psql/pg_restore, a dump "
    "pg_restore cannot read back",
    2: "disk full: the free-space check before the run, or a write failing with ENOSPC",
    3: "another run holds the lock (runs never overlap)",
    4: "configuration or usage error (variable, secret file, argument, refused restore target)",
    5: "storage error other than a full disk (permission denied, I/O error)",
    6: "restore: restored but different from the source; list: a checksum does not match",
    7: "interrupted by SIGTERM/SIGINT before the run finished",
}

RESULTS = ("success", "db_error", "disk_full", "overlap", "config_error", "io_error", "interrupted")

_FULL = {errno.ENOSPC, errno.EDQUOT}


def from_os_error(exc: OSError, what: str) -> BackupError:
    """An OSError of a file operation as a DiskFull (by errno, never by message) or else a
    StorageError; `what` names the operation and the path."""
    reason = exc.strerror or str(exc)
    if exc.errno in _FULL:
        return DiskFull(f"{what}: {reason} (errno {errno.errorcode.get(exc.errno, exc.errno)})")
    return StorageError(f"{what}: {reason}")
