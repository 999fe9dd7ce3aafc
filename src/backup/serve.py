"""`python -m backup serve`: the long-running service. Runs a backup daily at BACKUP_SCHEDULE
(UTC), and once at start when backup.log shows no success within BACKUP_STARTUP_MAX_AGE_HOURS;
serves /metrics (Prometheus) and /healthz on BACKUP_METRICS_PORT. A failed run is logged (a JSON
line on stdout and its line in backup.log) and counted (backup_runs_total, from backup.log, so
runs started by hand count too); the service goes on and the alert rules turn the metrics into
an alert (B1). SIGTERM ends it; a run in progress is
stopped and leaves no partial file under a final name."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backup import logs, runlog
from backup.config import Config
from backup.metrics import Metrics
from backup.pgtools import write_session_pgpass
from backup.run import run_backup
from backup.schedule import due_at_start, next_run
from backup.signals import stop_event


class State:
    """What /healthz reports; written by the scheduler, read by HTTP threads."""

    def __init__(self) -> None:
        self.heartbeat = time.monotonic()
        self.running_since: float | None = None
        self.next_run: datetime | None = None
        self.last_result: str | None = None


def make_handler(metrics: Metrics, state: State, stale_after: float):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                metrics.sync()  # runs logged by anyone since the last scrape
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            elif self.path == "/healthz":
                # healthy while the scheduler loop is alive: it beats at least once a minute
                # when idle; a run in progress is bounded by its own timeouts (watchdog)
                age = time.monotonic() - state.heartbeat
                ok = state.running_since is not None or age < stale_after
                body = {
                    "status": "ok" if ok else "stuck",
                    "running": state.running_since is not None,
                    "next_run": state.next_run.isoformat() if state.next_run else None,
                    "last_result": state.last_result,
                }
                self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # scrapes every 15 s would drown the log
            pass

    return Handler


def serve(cfg: Config) -> int:
    cfg.password()  # fail fast (S6): a missing secret stops the service at start, not at 02:30
    logs.info("database password loaded", file=str(cfg.password_file))
    if write_session_pgpass(cfg):  # T3: an operator's pg_dump in this container needs no password
        logs.info("password file for operators written", pgpassfile=str(cfg.session_pgpass))
    stop = stop_event(logs.info, "stopping")

    metrics, state = Metrics(cfg.backup_dir), State()
    last = runlog.last_success(cfg.backup_dir)
    metrics.sync()
    server = ThreadingHTTPServer(
        ("", cfg.metrics_port), make_handler(metrics, state, stale_after=300)
    )
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    logs.info(
        "backup service running",
        metrics_port=cfg.metrics_port,
        schedule=[t.strftime("%H:%M") for t in cfg.schedule],
        databases=list(cfg.databases),
        retention_days=cfg.retention_days,
        last_success=last.started.isoformat() if last else None,
    )

    def one_run(reason: str) -> None:
        logs.info("scheduled run", reason=reason)
        state.running_since = time.monotonic()
        report = run_backup(cfg, stop=stop)
        state.running_since = None
        state.heartbeat = time.monotonic()
        state.last_result = report.result
        if not metrics.sync():  # its line could not be written (a full disk): count it anyway
            metrics.observe(report.record(cfg.databases))

    now = datetime.now(UTC)
    if due_at_start(last.started if last else None, now, cfg.startup_max_age_hours):
        one_run(f"no successful run within {cfg.startup_max_age_hours:g} h")
    state.next_run = next_run(datetime.now(UTC), cfg.schedule)
    while not stop.is_set():
        state.heartbeat = time.monotonic()
        if datetime.now(UTC) >= state.next_run:
            one_run("schedule")
            state.next_run = next_run(datetime.now(UTC), cfg.schedule)
            logs.info("next run", at=state.next_run.isoformat())
            continue
        # wake at least once a minute: wall-clock jumps (NTP, suspend) are caught up
        wait = (state.next_run - datetime.now(UTC)).total_seconds()
        stop.wait(max(0.0, min(60.0, wait)))
    server.shutdown()
    logs.info("backup service stopped")
    return 0
