"""One backup run (`python -m backup run`, and each scheduled run of `serve`):

lock -> remove partials of killed runs -> connect and size the databases -> free-space check ->
pg_dump -Fc of each database (a failing one does not stop the others) -> pg_dumpall --globals-only
-> rotation (only after a fully successful run) -> one line in backup.log.

The result maps to the exit code (backup.errors): 0 success, 1 database error, 2 disk full,
3 overlap, 4 configuration, 5 other storage error, 7 interrupted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from backup import logs, naming, retention, runlog, space
from backup.config import Config
from backup.dump import Artifact, Opener, Source, dump_database, dump_globals
from backup.errors import BackupError, ConfigError, DatabaseError, from_os_error
from backup.files import AtomicFile, remove_partials
from backup.lock import RunLock


@dataclass
class RunReport:
    started: datetime
    result: str = "success"
    exit_code: int = 0
    duration: float = 0.0
    artifacts: list[Artifact] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def total_bytes(self) -> int:
        return sum(a.size for a in self.artifacts)

    def record(self, databases: tuple[str, ...]) -> runlog.RunRecord:
        return runlog.RunRecord(
            started=self.started,
            result=self.result,
            exit_code=self.exit_code,
            duration=self.duration,
            databases=databases,
            sizes={a.name: a.size for a in self.artifacts},
            rotated=len(self.rotated),
            message=self.message,
        )


def _check_dir(directory: Path) -> None:
    if not directory.is_dir():
        raise ConfigError(f"backup directory {directory} does not exist (BACKUP_DIR)")


def _dumps(
    cfg: Config,
    source: Source,
    started: datetime,
    report: RunReport,
    opener: Opener,
    free: Callable[[Path], int],
    stop: threading.Event | None,
) -> None:
    sizes = source.database_sizes(cfg.databases)
    have = space.check(cfg.backup_dir, sizes, cfg.size_factor, cfg.min_free_bytes, free)
    logs.info("databases sized", sizes=sizes, free_bytes=have)
    failed: list[str] = []
    for db in cfg.databases:
        if db not in sizes:
            failed.append(f"{db}: no such database")
            logs.error("dump failed", database=db, error="no such database")
            continue
        t0 = time.monotonic()
        final = cfg.backup_dir / naming.dump_name(db, started)
        try:
            art = dump_database(source, db, final, opener=opener, stop=stop)
        except DatabaseError as exc:  # the other databases are still dumped
            failed.append(str(exc))
            logs.error("dump failed", database=db, error=str(exc))
            continue
        report.artifacts.append(art)
        logs.info(
            "dump written",
            database=db,
            file=art.path.name,
            bytes=art.size,
            seconds=round(time.monotonic() - t0, 3),
            server=art.server_version,
        )
    final = cfg.backup_dir / naming.globals_name(started)
    try:
        art = dump_globals(source, final, opener=opener, stop=stop)
        report.artifacts.append(art)
        logs.info("globals written", file=art.path.name, bytes=art.size)
    except DatabaseError as exc:
        failed.append(str(exc))
        logs.error("globals dump failed", error=str(exc))
    if failed:
        raise DatabaseError("; ".join(failed))


def run_backup(
    cfg: Config,
    *,
    source: Callable[[], AbstractContextManager[Source]] | None = None,
    opener: Opener = AtomicFile,
    free: Callable[[Path], int] = space.free_bytes,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    stop: threading.Event | None = None,
) -> RunReport:
    """Run one backup and log it; never raises a BackupError (it is in the report)."""
    if source is None:
        from backup.pgtools import PgTools

        def source() -> PgTools:
            return PgTools(cfg, stop)

    started = now()
    t0 = time.monotonic()
    report = RunReport(started=started)
    lock = RunLock(cfg.backup_dir)
    logs.info("backup run starting", databases=list(cfg.databases), dir=str(cfg.backup_dir))
    try:
        _check_dir(cfg.backup_dir)
        with lock:
            stale = remove_partials(cfg.backup_dir)
            if stale:
                logs.warning("removed partial files of an interrupted run", files=stale)
            with source() as src:
                _dumps(cfg, src, started, report, opener, free, stop)
            report.rotated = retention.delete_expired(cfg.backup_dir, cfg.retention_days)
            if report.rotated:
                logs.info("expired dumps deleted", files=report.rotated)
    except BackupError as exc:
        report.result, report.exit_code, report.message = exc.result, exc.exit_code, str(exc)
    except OSError as exc:  # a file operation outside the translated paths: still by errno
        err = from_os_error(exc, "backup run")
        report.result, report.exit_code, report.message = err.result, err.exit_code, str(err)
    report.duration = time.monotonic() - t0
    _log_run(cfg, report)
    return report


def _log_run(cfg: Config, report: RunReport) -> None:
    try:
        if cfg.backup_dir.is_dir():
            runlog.append(cfg.backup_dir, report.record(cfg.databases))
    except BackupError as exc:
        logs.error("backup.log not written", error=str(exc))
        if report.ok:  # B3 needs the line: a run whose record is lost did not fully succeed
            report.result, report.exit_code, report.message = exc.result, exc.exit_code, str(exc)
    fields = dict(
        result=report.result,
        exit_code=report.exit_code,
        duration_s=round(report.duration, 3),
        sizes={a.name: a.size for a in report.artifacts},
        total_bytes=report.total_bytes,
        rotated=report.rotated or None,
    )
    if report.ok:
        logs.info("backup run finished", **fields)
    else:
        logs.error("backup run failed", error=report.message, **fields)
