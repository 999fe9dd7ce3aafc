"""backup.metrics and the service's HTTP endpoints (B1: every failed run is counted and visible,
whoever ran it: the metrics follow backup.log)."""

import json
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from backup import runlog
from backup.metrics import Metrics
from backup.runlog import RunRecord
from backup.serve import State, make_handler

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 31, 2, 30, tzinfo=UTC)
OK = RunRecord(T0, "success", 0, 4.0, ("praxis",), sizes={"praxis": 1000, "globals": 24})
FULL = RunRecord(T0.replace(hour=3), "disk_full", 2, 1.0, ("praxis",), message="full")


def sample(m: Metrics, name: str, **labels) -> float:
    return m.registry.get_sample_value(name, labels or None)


def test_runs_in_the_log_are_counted_by_result(tmp_path: Path):
    m = Metrics(tmp_path)
    assert m.sync() == 0  # no log yet
    assert sample(m, "backup_runs_total", result="db_error") == 0  # exists before any failure
    runlog.append(tmp_path, OK)
    runlog.append(tmp_path, FULL)
    assert m.sync() == 2
    assert sample(m, "backup_runs_total", result="success") == 1
    assert sample(m, "backup_runs_total", result="disk_full") == 1
    assert sample(m, "backup_last_success_timestamp_seconds") == T0.timestamp() + 4
    assert sample(m, "backup_last_run_timestamp_seconds") == FULL.started.timestamp() + 1
    assert sample(m, "backup_last_size_bytes") == 1024
    assert sample(m, "backup_last_exit_code") == 2
    assert sample(m, "backup_last_duration_seconds") == 1.0
    assert m.sync() == 0, "a line is counted once"
    runlog.append(tmp_path, OK)
    assert m.sync() == 1 and sample(m, "backup_runs_total", result="success") == 2


def test_a_half_written_line_waits_for_its_end(tmp_path: Path):
    m = Metrics(tmp_path)
    line = runlog.format_line(OK)
    log = tmp_path / runlog.LOG_NAME
    log.write_text(line[:20])
    assert m.sync() == 0
    with log.open("a") as fh:
        fh.write(line[20:])
    assert m.sync() == 1


def test_metrics_and_healthz_endpoints(tmp_path: Path):
    m, state = Metrics(tmp_path), State()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(m, state, stale_after=60))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        runlog.append(tmp_path, FULL)  # a run by someone else: seen at the next scrape
        body = urllib.request.urlopen(f"{base}/metrics", timeout=5).read()
        assert body == generate_latest(m.registry)
        assert b'backup_runs_total{result="disk_full"} 1.0' in body
        health = json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=5).read())
        assert health["status"] == "ok"
        state.heartbeat -= 120  # a long run: no beat, but bounded by its own timeouts
        state.running_since = state.heartbeat
        assert urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200
        state.running_since = None  # idle and no beat: the scheduler loop is stuck
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
        assert exc.value.code == 503
    finally:
        server.shutdown()
        server.server_close()
