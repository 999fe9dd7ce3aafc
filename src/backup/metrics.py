"""Prometheus metrics of the backup service (B1), derived from backup.log: every run that writes
its line there is counted, whoever ran it (the schedule, an operator's `docker compose exec backup
python -m backup run`, a throwaway container on the same volume), and a restart of the service
neither forgets nor invents a run. The alert rules (docs/backup-restore.md) use:

    backup_last_success_timestamp_seconds   end of the last successful run (0: none recorded)
    backup_last_run_timestamp_seconds       end of the last run, whatever its result
    backup_last_duration_seconds            duration of the last run
    backup_last_size_bytes                  bytes written by the last successful run
    backup_last_exit_code                   exit code of the last run (backup.errors.EXIT_CODES)
    backup_runs_total{result}               runs by result: success, db_error, disk_full,
                                            overlap, config_error, io_error, interrupted
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from backup import runlog
from backup.errors import RESULTS


class Metrics:
    def __init__(self, directory: Path, registry: CollectorRegistry | None = None):
        self.directory = directory
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._offset = 0
        self._partial = b""
        self._lock = threading.Lock()
        r = self.registry
        self.last_success = Gauge(
            "backup_last_success_timestamp_seconds",
            "Unix time the last successful backup run ended (0 if none is recorded)",
            registry=r,
        )
        self.last_run = Gauge(
            "backup_last_run_timestamp_seconds",
            "Unix time the last backup run ended, whatever its result",
            registry=r,
        )
        self.last_duration = Gauge(
            "backup_last_duration_seconds", "Duration of the last backup run", registry=r
        )
        self.last_size = Gauge(
            "backup_last_size_bytes",
            "Bytes of dumps written by the last successful backup run",
            registry=r,
        )
        self.last_exit = Gauge(
            "backup_last_exit_code",
            "Exit code of the last backup run (0 success, 1 database, 2 disk full, 3 overlap)",
            registry=r,
        )
        self.runs = Counter("backup_runs", "Backup runs by result", ["result"], registry=r)
        for result in RESULTS:  # every series exists from the start, so increase() sees the 1st
            self.runs.labels(result=result)

    def observe(self, rec: runlog.RunRecord) -> None:
        end = rec.started.timestamp() + rec.duration
        self.runs.labels(result=rec.result).inc()
        self.last_run.set(end)
        self.last_duration.set(rec.duration)
        self.last_exit.set(rec.exit_code)
        if rec.result == "success":
            self.last_success.set(end)
            self.last_size.set(rec.total_bytes)

    def sync(self) -> int:
        """Read the lines appended to backup.log since the last call; return how many runs."""
        with self._lock:
            path = self.directory / runlog.LOG_NAME
            try:
                with path.open("rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    if size < self._offset:  # truncated or replaced: read it again
                        self._offset, self._partial = 0, b""
                    fh.seek(self._offset)
                    data = fh.read()
            except FileNotFoundError:
                return 0
            self._offset += len(data)
            data = self._partial + data
            *lines, self._partial = data.split(b"\n")
            n = 0
            for line in lines:
                try:
                    rec = runlog.parse_line(line.decode("utf-8", "replace"))
                except ValueError:
                    continue
                self.observe(rec)
                n += 1
            return n
