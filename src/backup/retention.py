"""Retention (B2): dumps older than the retention period, by mtime, are deleted with their
checksum files; nothing else is. Not backup.log, not the lock file, not a file of unknown name,
not a directory or a symlink, whatever its age.

Called only after a successful run: a stretch of failing runs never deletes the last good dumps.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from backup.checksum import SUFFIX
from backup.errors import from_os_error
from backup.naming import parse


def _regular_mtime(path: Path) -> float | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return st.st_mtime if stat.S_ISREG(st.st_mode) else None


def expired(directory: Path, retention_days: float, now: float | None = None) -> list[Path]:
    """The dumps whose mtime is older than the retention, each with its checksum file; and
    checksum files of the same age whose dump is already gone."""
    now = time.time() if now is None else now
    limit = now - retention_days * 86400
    out: set[Path] = set()
    for entry in os.scandir(directory):
        path = Path(entry.path)
        if parse(path) is not None:
            mtime = _regular_mtime(path)
            if mtime is not None and mtime < limit:
                out.add(path)
                check = path.with_name(path.name + SUFFIX)
                if _regular_mtime(check) is not None:
                    out.add(check)
        elif entry.name.endswith(SUFFIX) and parse(path.with_name(entry.name[: -len(SUFFIX)])):
            mtime = _regular_mtime(path)
            dump = path.with_name(entry.name[: -len(SUFFIX)])
            if mtime is not None and mtime < limit and not dump.exists():
                out.add(path)
    return sorted(out)


def delete_expired(directory: Path, retention_days: float, now: float | None = None) -> list[str]:
    """Delete the expired backup files; return their names."""
    deleted = []
    for path in expired(directory, retention_days, now):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise from_os_error(exc, f"deleting expired {path}") from exc
        deleted.append(path.name)
    return deleted
