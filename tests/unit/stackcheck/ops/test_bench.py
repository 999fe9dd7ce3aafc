"""stackcheck.ops.bench: what it reads from earlier runs, how it prints and records a bench run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stackcheck.ops import bench

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite
name="pytest" errors="1" failures="2" skipped="3" tests="40" time="812.5"><testcase
classname="t" name="a" time="1.0" /></testsuite></testsuites>"""


def evidence(measurements=(), samples=()) -> dict:
    return {
        "requirements": [
            {"id": "SLA-P2", "measurements": [{"value": 9.0, "how": "p95 of 5"}]},
            {"id": "SLA-P1", "measurements": list(measurements), "samples": list(samples)},
        ]
    }


def run_dir(reports: Path, name: str, complete: bool, junit: str | None = JUNIT) -> Path:
    d = reports / "runs" / name
    d.mkdir(parents=True)
    (d / "sla-evidence.json").write_text(json.dumps({"run": {"id": name, "complete": complete}}))
    if junit is not None:
        (d / "junit.xml").write_text(junit)
    return d


def test_junit_totals_of_testsuites_and_of_a_single_testsuite(tmp_path):
    p = tmp_path / "junit.xml"
    p.write_text(JUNIT)
    assert bench.junit_totals(p) == {
        "time": 812.5,
        "tests": 40,
        "failures": 2,
        "errors": 1,
        "skipped": 3,
    }
    p.write_text('<testsuite tests="2" time="1.5" failures="0"><testcase name="x"/></testsuite>')
    assert bench.junit_totals(p)["time"] == 1.5
    assert bench.junit_totals(p)["tests"] == 2


def test_setup_seconds_read_and_missing(tmp_path):
    assert bench.read_setup(tmp_path).value is None
    assert "no record" in bench.read_setup(tmp_path).note
    (tmp_path / "setup-seconds").write_text("142\n")
    assert bench.read_setup(tmp_path).value == 142.0


def test_n8n_prepare_takes_the_last_install_logged(tmp_path):
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "prepare-n8n.log"
    log.write_text(
        "n8n-prepare: prepared node v24 + n8n 2.35.7 in /x: app.tar 1.1G, 516 s (stamp ab)\n"
        "n8n-prepare: prepared node v24 + n8n 2.35.7 in /x: app.tar 1.0G, 97 s (stamp cd)\n"
    )
    assert bench.read_n8n_prepare(tmp_path).value == 97.0
    log.write_text("n8n-prepare: up to date: node v24 + n8n 2.35.7 in /x (stamp cd)\n")
    assert bench.read_n8n_prepare(tmp_path).value is None


def test_last_full_suite_is_the_newest_complete_run(tmp_path):
    run_dir(tmp_path, "20261201T080000Z-aaa", complete=True, junit=JUNIT.replace("812.5", "700"))
    run_dir(tmp_path, "20261202T080000Z-bbb", complete=True)
    run_dir(tmp_path, "20261202T090000Z-ccc", complete=False)  # newer, but partial
    (tmp_path / "junit.xml").write_text(JUNIT.replace("812.5", "3.0"))
    fig = bench.last_full_suite(tmp_path)
    assert fig.value == 812.5
    assert fig.extra["suite_run"] == "20261202T080000Z-bbb"
    assert "40 tests, 3 failed, 3 skipped" in fig.note


def test_last_full_suite_falls_back_to_the_biggest_partial_run(tmp_path):
    run_dir(tmp_path, "20261202T080000Z-aaa", complete=False)  # 40 tests
    run_dir(tmp_path, "20261202T090000Z-bbb", complete=False, junit=JUNIT.replace("40", "3"))
    run_dir(tmp_path, "20261202T100000Z-ccc", complete=True, junit=None)  # no junit kept
    fig = bench.last_full_suite(tmp_path)
    assert fig.value == 812.5
    assert fig.note.startswith("PARTIAL (no complete run kept): run 20261202T080000Z-aaa, 40 tests")


def test_last_full_suite_falls_back_to_reports_junit(tmp_path):
    (tmp_path / "junit.xml").write_text(JUNIT.replace("812.5", "3.25"))
    fig = bench.last_full_suite(tmp_path)
    assert fig.value in (3.2, 3.3)  # rounded to 0.1 s
    assert fig.note.startswith("PARTIAL (no complete run kept): reports/junit.xml")
    assert bench.last_full_suite(tmp_path / "nothing").value is None


def test_p1_from_measurements_p50_and_p95():
    p50, p95 = bench.p1_figures(
        evidence(
            [
                {"value": 0.61, "how": "p50 of 15 sequential mails", "run": "r1"},
                {"value": 0.74, "how": "p95 of 15 sequential mails (max 0.8 s)", "run": "r1"},
            ]
        )
    )
    assert (p50.value, p95.value) == (0.61, 0.74)
    assert "r1" in p50.note


def test_p1_from_samples_when_no_measurement():
    values = [0.1 * i for i in range(1, 21)]  # 0.1 .. 2.0
    p50, p95 = bench.p1_figures(evidence(samples=[{"kind": "distribution", "values": values}]))
    assert p50.value == pytest.approx(1.05)
    assert p95.value == pytest.approx(1.905)  # inclusive, as the report computes it


def test_p1_missing():
    p50, p95 = bench.p1_figures(evidence())
    assert p50.value is None and p95.value is None
    assert "not measured" in p95.note
    assert bench.p1_figures({})[0].note == "no SLA-P1 in the evidence"


def test_render_shows_previous_and_change():
    figs = [
        bench.Figure("setup_s", "setup", 120.0, "at noon"),
        bench.Figure("p1_p95_s", "p95", 0.5),
        bench.Figure("cold_up_s", "cold up", None, "not measured (--cold)"),
    ]
    prev = {"at": "2026-12-02T10:00:00+00:00", "figures": {"setup_s": 400.0, "p1_p95_s": 0.4}}
    out = bench.render(figs, prev).splitlines()
    assert out[0].split() == ["figure", "now", "previous", "2026-12-02", "10:00", "change"]
    assert set(out[1]) <= {"-", " "}
    assert "120 s" in out[2] and "400 s" in out[2] and "-280 s (-70%)" in out[2]
    assert out[2].endswith("at noon")
    assert "+0.100 s (+25%)" in out[3]
    assert "not measured (--cold)" in out[4]
    assert " - " in out[4]
    assert "previous" in bench.render(figs, None)


def test_record_append_and_load_previous(tmp_path):
    log = tmp_path / "bench.jsonl"
    assert bench.load_previous(log) is None
    figs = [
        bench.Figure("setup_s", "setup", 120.0, "at noon"),
        bench.Figure("suite_s", "suite", 800.0, extra={"suite_run": "r9"}),
    ]
    rec = bench.record(figs, "abc1234", True, datetime(2026, 12, 2, 11, 0, tzinfo=UTC))
    assert rec["at"] == "2026-12-02T11:00:00+00:00"
    assert rec["figures"] == {"setup_s": 120.0, "suite_s": 800.0}
    assert rec["suite_run"] == "r9"
    assert rec["notes"] == {"setup_s": "at noon"}
    bench.append(log, rec)
    bench.append(log, {**rec, "commit": "def5678"})
    with log.open("a") as fh:
        fh.write('{"torn": ')  # a crash mid-write
    assert bench.load_previous(log)["commit"] == "def5678"
    assert len(log.read_text().splitlines()) == 3


def test_the_infra_command_collects_this_project(tmp_path):
    """The bench's own `pytest -m infra` collects the suite as it is laid out (tests/unit
    mirrors src/, so modules share basenames): a collection error would be timed as 'infra'."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[4]
    cmd = bench.infra_command(root, tmp_path)
    cmd[0:1] = [sys.executable, "-m", "pytest"]
    proc = subprocess.run(
        [*cmd, "--collect-only"], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " tests collected" in proc.stdout or "selected" in proc.stdout, proc.stdout[-500:]
