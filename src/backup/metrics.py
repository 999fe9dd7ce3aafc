"""Prometheus metrics of the backup service (B1). The alert rules (docs/backup-restore.md) use:

backup_last_success_timestamp_seconds   end of the last successful run (0: none known)
backup_last_run_timestamp_seconds       end of the last run, whatever its result
backup_last_duration_seconds            duration of the last run
backup_last_size_bytes                  bytes written by the last successful run
backup_last_exit_code                   exit code of the last run (0 success, see backup)
backup_runs_total{result}               runs by result: success, db_error, disk_full,
                                        overlap, config_error, io_error, interrupted
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from backup.errors import RESULTS
from backup.run import RunReport
from backup.runlog import RunRecord


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.last_success = Gauge(
            "backup_last_success_timestamp_seconds",
            "Unix time the last successful backup run ended (0 if none is known)",
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

    def seed(self, last: RunRecord | None) -> None:
        """At start: the last success recorded in backup.log, so a restart of the service does
        not make the 'backup missing' alert forget (or invent) anything."""
        if last is None:
            return
        end = last.started.timestamp() + last.duration
        self.last_success.set(end)
        self.last_size.set(last.total_bytes)

    def observe(self, report: RunReport) -> None:
        end = report.started.timestamp() + report.duration
        self.runs.labels(result=report.result).inc()
        self.last_run.set(end)
        self.last_duration.set(report.duration)
        self.last_exit.set(report.exit_code)
        if report.ok:
            self.last_success.set(end)
            self.last_size.set(report.total_bytes)
