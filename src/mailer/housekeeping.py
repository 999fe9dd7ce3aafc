"""Disk-space housekeeping of a mailer's data volume (requirement M7), daily at HOUSEKEEPING_AT
(UTC) and once at start; also `python -m mailer housekeeping` for an operator.

What goes, and what never does:
* quarantine/: infected files older than QUARANTINE_RETENTION_DAYS (30) are deleted; their
  records (signature, status) stay, with `attachments.file_removed_at` set.
* attachments/: only when ATTACHMENT_LOCAL_RETENTION_DAYS is set (> 0), i.e. where an archive
  (A6) keeps the files; by default stored attachments are the record of what arrived and stay.
* raw/ (large mails) and anything a queue entry needs (spool/) are never touched here.
Age is the file's modification time (when the mailer wrote it). Emptied directories go too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailer import metrics
from mailer.config import StorageConfig
from mailer.spool import sha256_file
from mailer.store import Store

log = logging.getLogger("mailer.housekeeping")


@dataclass
class Report:
    removed: dict[str, list[str]] = field(default_factory=dict)  # kind -> paths (relative)
    bytes_freed: int = 0
    # stored attachment files that do not match their row: (path, "changed" | "missing")
    integrity: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {kind: len(paths) for kind, paths in self.removed.items()}


def _expire(root: Path, kind: str, older_than: datetime, report: Report) -> None:
    """Delete files under data_dir/kind last written before `older_than`; prune empty dirs."""
    top = root / kind
    if not top.is_dir():
        return
    cutoff = older_than.timestamp()
    gone = report.removed.setdefault(kind, [])
    for dirpath, _dirs, files in os.walk(top, topdown=False):
        for name in files:
            path = Path(dirpath) / name
            try:
                st = path.lstat()
                if st.st_mtime < cutoff:
                    path.unlink()
                    gone.append(str(path.relative_to(root)))
                    report.bytes_freed += st.st_size
            except FileNotFoundError:
                continue
        if Path(dirpath) != top:
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)  # only succeeds when empty


def verify(profile: str, data_dir: Path, store: Store, report: Report) -> None:
    """Every kept attachment file still has the bytes its row's sha256 names: a file replaced or
    damaged on disk is reported (log and metric), never silently served as the mail's."""
    for email_id, rel, sha in store.stored_files():
        path = data_dir / rel
        try:
            problem = None if sha256_file(path) == sha else "changed"
        except FileNotFoundError:
            problem = "missing"
        if problem:
            report.integrity.append((rel, problem))
            metrics.ATTACHMENT_INTEGRITY.labels(profile, problem).inc()
            log.error(
                "stored attachment does not match its record",
                extra={"email_id": email_id, "path": rel, "problem": problem},
            )


def run_once(
    profile: str, storage: StorageConfig, store: Store | None, now: datetime | None = None
) -> Report:
    now = now or datetime.now(UTC)
    report = Report()
    cutoff = now - timedelta(days=storage.quarantine_retention_days)
    _expire(storage.data_dir, "quarantine", cutoff, report)
    if storage.attachment_retention_days > 0:
        cutoff = now - timedelta(days=storage.attachment_retention_days)
        _expire(storage.data_dir, "attachments", cutoff, report)
    paths = [p for ps in report.removed.values() for p in ps]
    if store is not None and paths:
        store.files_removed(paths)
    if store is not None:
        verify(profile, storage.data_dir, store, report)
    for kind, n in report.counts().items():
        if n:
            metrics.HOUSEKEEPING_REMOVED.labels(profile, kind).inc(n)
    metrics.HOUSEKEEPING_LAST_RUN.labels(profile).set(time.time())
    log.info(
        "housekeeping done",
        extra={
            "removed": report.counts(),
            "bytes_freed": report.bytes_freed,
            "integrity_failures": len(report.integrity),
        },
    )
    return report


def next_run(at: str, now: datetime) -> datetime:
    hour, minute = (int(x) for x in at.split(":"))
    due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return due if due > now else due + timedelta(days=1)


class Housekeeper:
    """The schedule: once at start, then daily. A failing run is logged and retried the next
    time; it never stops the thread (a dead thread would fail the health check)."""

    def __init__(self, profile: str, storage: StorageConfig, store: Store):
        self.profile, self.storage, self.store = profile, storage, store

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                run_once(self.profile, self.storage, self.store)
            except Exception:
                log.exception("housekeeping failed; trying again at the next run")
            due = next_run(self.storage.housekeeping_at, datetime.now(UTC))
            log.info("housekeeping scheduled", extra={"next_run": due.isoformat()})
            stop.wait((due - datetime.now(UTC)).total_seconds())
