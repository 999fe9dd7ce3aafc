"""backup.runlog (B3): one line per run with time, result, databases, sizes and duration."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backup import runlog
from backup.runlog import RunRecord, format_line, parse_line

pytestmark = pytest.mark.unit

STARTED = datetime(2025, 1, 31, 2, 30, 0, tzinfo=UTC)


def success() -> RunRecord:
    return RunRecord(
        started=STARTED,
        result="success",
        exit_code=0,
        duration=4.213,
        databases=("praxis", "ecom", "n8n"),
        sizes={"praxis": 81234, "ecom": 40211, "n8n": 30444, "globals": 1201},
        rotated=4,
    )


def test_success_line_has_time_result_databases_sizes_and_duration():
    assert format_line(success()) == (
        "2025-01-31T02:30:00Z result=success exit=0 duration_s=4.21 "
        "databases=praxis,ecom,n8n sizes=praxis:81234,ecom:40211,n8n:30444,globals:1201 "
        "total_bytes=153090 rotated=4\n"
    )


def test_failure_line_is_one_line_with_a_quoted_message():
    rec = RunRecord(
        started=STARTED,
        result="db_error",
        exit_code=1,
        duration=0.02,
        databases=("praxis",),
        message='psql: error: connection to server at "postgres" failed:\n  Connection refused',
    )
    line = format_line(rec)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ result=db_error exit=1 ", line)
    assert "sizes=- total_bytes=0" in line
    assert 'message="psql: error: connection to server at \\"postgres\\" failed: Connection' in line
    back = parse_line(line)
    assert (
        back.message == 'psql: error: connection to server at "postgres" failed: Connection refused'
    )


def test_parse_is_the_inverse_of_format():
    rec = success()
    back = parse_line(format_line(rec))
    assert back.started == rec.started and back.result == rec.result
    assert back.sizes == rec.sizes and back.databases == rec.databases
    assert back.rotated == 4 and back.duration == pytest.approx(4.21)


def test_append_writes_one_private_line_per_run_and_repairs_a_loose_mode(tmp_path: Path):
    log = tmp_path / runlog.LOG_NAME
    log.write_text("")
    log.chmod(0o644)
    runlog.append(tmp_path, success())
    runlog.append(tmp_path, success())
    assert len(log.read_text().splitlines()) == 2
    assert log.stat().st_mode & 0o777 == 0o640


def test_records_skip_foreign_lines_and_find_the_last_success(tmp_path: Path):
    failed = RunRecord(STARTED.replace(day=30), "disk_full", 2, 0.1, ("praxis",), message="full")
    (tmp_path / runlog.LOG_NAME).write_text(
        "someone wrote this by hand\n" + format_line(success()) + format_line(failed) + "\n"
    )
    recs = runlog.records(tmp_path)
    assert [r.result for r in recs] == ["success", "disk_full"]
    assert runlog.last_success(tmp_path).started == STARTED
    assert runlog.last_success(tmp_path / "missing") is None
