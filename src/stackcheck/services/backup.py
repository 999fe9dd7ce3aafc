"""The backup service: runs of `python3 -m backup` inside its container (what its scheduler and
an operator run) and its own metrics."""

from __future__ import annotations

import time

from stackcheck.services.base import ExecResult, RunningExec, Service

METRICS_PORT = 9102
COMMAND = ["python3", "-m", "backup"]


class Backup(Service):
    def run(self, *args: str, env: dict[str, str] | None = None) -> tuple[ExecResult, float]:
        """`python3 -m backup ARGS` inside the container, timed (seconds)."""
        start = time.monotonic()
        res = self.exec([*COMMAND, *args], env=env)
        return res, time.monotonic() - start

    def start_run(self, *args: str) -> RunningExec:
        """`python3 -m backup ARGS` started in the background (a run to overlap with)."""
        return self.exec_background([*COMMAND, *args])

    def metrics(self) -> dict[str, float]:
        """Its `backup_*` samples, keyed by the series as printed (`name{labels}`)."""
        out = {}
        for ln in self.scrape(METRICS_PORT).splitlines():
            if ln.startswith("backup_") and " " in ln:
                key, _, value = ln.rpartition(" ")
                out[key] = float(value)
        return out
