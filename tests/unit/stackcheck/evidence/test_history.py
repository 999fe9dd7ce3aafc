"""stackcheck.evidence.history: every run kept in reports/runs/, one append-only history, and the
top-level evidence = the latest complete run merged with newer partial runs (issue 14).

The plugin-level tests run pytest in a pytester project (a subprocess, as test_plugin.py does)
with a suite that has one test per acceptance suite, so a run of all of it is complete.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stackcheck.evidence import history

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[4]
REQUIREMENTS = ROOT / "docs" / "REQUIREMENTS.md"
SLA_FILE = ROOT / "fixtures" / "sla.yml"

SUITE = """
import pytest

@pytest.mark.infra
@pytest.mark.req("T2")
def test_infra(sla):
    sla.record("T2", "PostgreSQL {version}", how="SELECT version()")

@pytest.mark.e2e
@pytest.mark.req("E4")
def test_e2e(sla):
    sla.record("E4", {e4}, unit="s", how="50 mails")
    sla.samples("E4", [1.0, 2.0, 3.5], kind="timeline", how="each mail stored")

@pytest.mark.perf
@pytest.mark.req("SLA-P1")
def test_perf(sla):
    sla.samples("SLA-P1", [0.2, 0.3, 0.25], how="per mail")
    sla.check("SLA-P1", {p1}, how="p95")

@pytest.mark.security
@pytest.mark.req("S1")
def test_security():
    pass

@pytest.mark.recovery
@pytest.mark.req("SLA-R2")
def test_recovery(sla):
    sla.samples("SLA-R2", {{"redis": 3.0, "postgres": 7.5}}, how="SIGKILL to healthy")
    sla.record("SLA-R2", 7.5, unit="s", how="worst of two")
"""

UNIT = """
import pytest

@pytest.mark.req("D1")
def test_docs():
    pass

@pytest.mark.req("S1")
def test_s1_unit_part():
    pass
"""


@pytest.fixture
def evidence_dir(pytester) -> Path:
    return pytester.path / "evidence"


@pytest.fixture
def run(pytester, evidence_dir, monkeypatch, tmp_path_factory):
    # pytester points HOME at the test's folder: without this, matplotlib would rebuild its font
    # cache in every inner run (seconds each)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.getbasetemp() / "matplotlib"))

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            f"--requirements={REQUIREMENTS}",
            f"--sla-file={SLA_FILE}",
            f"--evidence-dir={evidence_dir}",
            f"--junitxml={pytester.path / 'junit.xml'}",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            *args,
        )

    return run


def write_suite(pytester, version="15", e4=40.0, p1=0.3):
    pytester.makepyfile(test_suite=SUITE.format(version=version, e4=e4, p1=p1))


def top(evidence_dir: Path) -> dict:
    return json.loads((evidence_dir / "sla-evidence.json").read_text(encoding="utf-8"))


def reqs(data: dict) -> dict:
    return {r["id"]: r for r in data["requirements"]}


def run_dirs(evidence_dir: Path) -> list[Path]:
    return sorted(p for p in (evidence_dir / "runs").iterdir() if p.is_dir())


def test_two_runs_leave_two_run_folders_and_a_history_of_both(pytester, run, evidence_dir):
    write_suite(pytester, e4=40.0)
    run().assert_outcomes(passed=5)
    write_suite(pytester, e4=55.0)
    run().assert_outcomes(passed=5)

    dirs = run_dirs(evidence_dir)
    assert len(dirs) == 2
    assert dirs[0].name != dirs[1].name
    for d in dirs:
        assert d.name.split("-")[1] == "nogit"  # <UTC start>-<short commit>, no repo here
        assert {p.name for p in d.iterdir()} >= {
            "sla-evidence.json",
            "sla-evidence.html",
            "junit.xml",
        }
        own = json.loads((d / "sla-evidence.json").read_text(encoding="utf-8"))
        assert own["run"]["id"] == d.name
        assert own["run"]["complete"] is True
        assert own["run"]["suites"] == ["infra", "e2e", "perf", "recovery", "security"]

    lines = history.read_history(evidence_dir)
    assert [ln["run"] for ln in lines if ln["kind"] == "run"] == [d.name for d in dirs]
    e4 = [ln for ln in lines if ln["kind"] == "measurement" and ln["id"] == "E4"]
    assert [(ln["value"], ln["run"]) for ln in e4] == [(40.0, dirs[0].name), (55.0, dirs[1].name)]
    ctx = e4[0]["context"]
    assert ctx["commit"] == "nogit"
    assert ctx["complete"] == "yes"
    assert "--requirements=" in ctx["selection"]
    assert ctx["host"]
    samples = [ln for ln in lines if ln["kind"] == "samples" and ln["id"] == "SLA-R2"]
    assert samples[-1]["values"] == {"redis": 3.0, "postgres": 7.5}
    assert samples[-1]["sample_kind"] == "labelled"
    verdicts = [ln for ln in lines if ln["kind"] == "verdict" and ln["id"] == "S1"]
    assert [v["verdict"] for v in verdicts] == ["pass", "pass"]

    data = top(evidence_dir)
    assert data["complete_run"] == dirs[1].name  # the newer complete run replaces the older
    assert reqs(data)["E4"]["measurements"][0]["value"] == 55.0


def test_partial_run_after_a_full_one_keeps_its_values_labelled(pytester, run, evidence_dir):
    write_suite(pytester, version="15", e4=40.0)
    run().assert_outcomes(passed=5)
    write_suite(pytester, version="16", e4=99.0)
    result = run("-m", "infra")  # deselects e2e, perf, security, recovery
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SLA evidence*", "*complete run * + 1 newer partial*"])
    full, partial = (d.name for d in run_dirs(evidence_dir))

    own = json.loads((evidence_dir / "runs" / partial / "sla-evidence.json").read_text("utf-8"))
    assert own["run"]["complete"] is False
    assert any("deselected 4 tests" in w for w in own["run"]["partial because"])

    data = top(evidence_dir)
    r = reqs(data)
    assert data["complete_run"] == full
    assert [x["id"] for x in data["runs"]] == [full, partial]
    # what the partial run re-ran: its own value, labelled with it
    assert [(m["value"], m["run"]) for m in r["T2"]["measurements"]] == [("PostgreSQL 16", partial)]
    assert r["T2"]["test_runs"] == {"test_suite.py::test_infra": partial}
    assert r["T2"]["run"] == partial
    # what it did not run: the full run's values, labelled with the full run
    assert [(m["value"], m["run"]) for m in r["E4"]["measurements"]] == [(40.0, full)]
    assert r["E4"]["verdict"] == "pass"
    assert r["SLA-P1"]["samples"][0]["values"] == [0.2, 0.3, 0.25]
    assert r["SLA-P1"]["samples"][0]["run"] == full
    assert r["S1"]["test_runs"] == {"test_suite.py::test_security": full}
    assert data["summary"]["pass"] == 5
    page = (evidence_dir / "sla-evidence.html").read_text(encoding="utf-8")
    assert full in page and partial in page


def test_unit_run_after_a_full_one_does_not_erase_it(pytester, run, evidence_dir):
    """`pytest tests/unit` carries IDs too (D1, S8, ...): it adds, it never erases."""
    write_suite(pytester)
    run().assert_outcomes(passed=5)
    pytester.makepyfile(test_unit=UNIT)
    run("test_unit.py").assert_outcomes(passed=2)
    full, unit = (d.name for d in run_dirs(evidence_dir))
    r = reqs(top(evidence_dir))
    assert r["D1"]["test_runs"] == {"test_unit.py::test_docs": unit}
    assert r["E4"]["measurements"][0]["run"] == full
    # one requirement proved by both: both tests' outcomes, each with its own run
    assert r["S1"]["test_runs"] == {
        "test_suite.py::test_security": full,
        "test_unit.py::test_s1_unit_part": unit,
    }
    assert r["S1"]["runs"] == sorted([full, unit])


def test_a_failure_in_a_partial_run_shows_in_the_report(pytester, run, evidence_dir):
    write_suite(pytester, p1=0.3)
    run().assert_outcomes(passed=5)
    write_suite(pytester, p1=9.0)  # misses the 5 s target
    run("-m", "perf").assert_outcomes(failed=1)
    data = top(evidence_dir)
    assert reqs(data)["SLA-P1"]["verdict"] == "fail"
    assert reqs(data)["E4"]["verdict"] == "pass"
    assert data["summary"]["fail"] == 1


def test_without_a_complete_run_partial_runs_are_merged(pytester, run, evidence_dir):
    write_suite(pytester)
    run("-m", "infra").assert_outcomes(passed=1)
    run("-m", "e2e").assert_outcomes(passed=1)
    data = top(evidence_dir)
    assert data["complete_run"] is None
    r = reqs(data)
    assert r["T2"]["verdict"] == r["E4"]["verdict"] == "pass"
    assert r["S1"]["verdict"] == "not covered"


def test_a_single_file_or_test_id_makes_a_run_partial(pytester, run, evidence_dir):
    write_suite(pytester)
    run("test_suite.py").assert_outcomes(passed=5)
    own = json.loads(next((evidence_dir / "runs").glob("*/sla-evidence.json")).read_text("utf-8"))
    assert own["run"]["complete"] is False
    assert own["run"]["partial because"] == ["selected test_suite.py"]


# --- merge() and the files, without pytest runs -------------------------------------------------
def evidence(run_id, finished, complete, reqs_):
    data = {
        "generated": finished,
        "host": "h",
        "context": {"run": run_id},
        "summary": {},
        "requirements": reqs_,
        "run": {"id": run_id, "finished": finished, "complete": complete},
    }
    return history.label(data, run_id)


def req(rid, tests=None, measurements=None):
    return {
        "id": rid,
        "group": "g",
        "requirement": "r",
        "target": "t",
        "tests": tests or {},
        "measurements": measurements or [],
        "samples": [],
        "verdict": "pass" if tests else "not covered",
    }


def m(value, test, verdict=None):
    return {"value": value, "unit": "s", "how": "h", "test": test, "verdict": verdict}


def test_merge_starts_at_the_latest_complete_run():
    old = evidence("r1", "2026-01-01T00:00:00+00:00", True, [req("A", {"t::a": "failed"})])
    base = evidence("r2", "2026-01-02T00:00:00+00:00", True, [req("A", {"t::a": "passed"})])
    newer = evidence(
        "r3",
        "2026-01-03T00:00:00+00:00",
        False,
        [req("A", {"t::b": "passed"}, [m(1.0, "t::b", "pass")]), req("B")],
    )
    skeleton = evidence("r3", "x", False, [req("A"), req("B")])
    merged = history.merge(skeleton, [old, base, newer])
    a = {r["id"]: r for r in merged["requirements"]}["A"]
    assert merged["complete_run"] == "r2"
    assert a["tests"] == {"t::a": "passed", "t::b": "passed"}  # r1's failure is gone
    assert a["test_runs"] == {"t::a": "r2", "t::b": "r3"}
    assert a["verdict"] == "pass"
    assert merged["summary"] == {"pass": 1, "fail": 0, "skipped": 0, "not covered": 1}
    assert "run" not in merged


def test_merge_drops_measurements_of_a_rerun_test_only():
    base = evidence(
        "r1",
        "2026-01-01T00:00:00+00:00",
        True,
        [req("A", {"t::a": "passed", "t::b": "passed"}, [m(1.0, "t::a"), m(2.0, "t::b")])],
    )
    rerun = evidence(
        "r2", "2026-01-02T00:00:00+00:00", False, [req("A", {"t::a": "failed"}, [m(9.0, "t::a")])]
    )
    merged = history.merge(evidence("x", "x", False, [req("A")]), [base, rerun])
    a = merged["requirements"][0]
    assert [(x["value"], x["run"]) for x in a["measurements"]] == [(2.0, "r1"), (9.0, "r2")]
    assert a["verdict"] == "fail"


def test_ids_no_longer_in_the_catalogue_are_dropped():
    old = evidence("r1", "2026-01-01T00:00:00+00:00", True, [req("GONE", {"t::a": "passed"})])
    merged = history.merge(evidence("x", "x", False, [req("A")]), [old])
    assert [r["id"] for r in merged["requirements"]] == ["A"]


def test_run_dir_names_are_unique_in_one_second(tmp_path):
    t = datetime(2026, 12, 2, 10, 0, 5, tzinfo=UTC)
    a = history.new_run_dir(tmp_path, t, "abc1234")
    b = history.new_run_dir(tmp_path, t, "abc1234")
    assert a.name == "20261202T100005Z-abc1234"
    assert b.name == "20261202T100005Z-abc1234-2"


def test_torn_history_line_is_skipped(tmp_path):
    (tmp_path / "history.jsonl").write_text('{"kind": "run", "run": "a"}\n{"kind": "meas', "utf-8")
    assert history.read_history(tmp_path) == [{"kind": "run", "run": "a"}]


def test_artifacts_of_an_earlier_run_are_not_copied(tmp_path):
    old = tmp_path / "report.html"
    old.write_text("old", "utf-8")
    new = tmp_path / "junit.xml"
    new.write_text("<x/>", "utf-8")
    import os

    os.utime(old, (1000, 1000))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert history.copy_artifacts(run_dir, [new, old, None], since=2000) == ["junit.xml"]


def test_git_commit_outside_a_repository(tmp_path):
    assert history.git_commit(tmp_path) == ("nogit", False)


def test_git_commit_of_this_checkout():
    commit, _ = history.git_commit(ROOT)
    assert commit == "nogit" or len(commit) >= 7


def test_rebuild_rewrites_the_top_level_from_the_kept_runs(tmp_path):
    run = evidence("r1", "2026-01-01T00:00:00+00:00", True, [req("A", {"t::a": "passed"})])
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "sla-evidence.json").write_text(json.dumps(run), "utf-8")
    assert history.main([str(tmp_path)]) == 0
    data = top(tmp_path)
    assert data["complete_run"] == "r1"
    assert reqs(data)["A"]["test_runs"] == {"t::a": "r1"}
    assert (tmp_path / "sla-evidence.html").is_file()
    assert history.main([str(tmp_path / "empty")]) == 1


BENCH = """
import time
import pytest

@pytest.mark.perf
@pytest.mark.req("SLA-P1")
def test_bench(benchmark, sla):
    benchmark.extra_info["mode"] = "pedantic"
    benchmark.pedantic(time.sleep, args=({delay},), rounds=3, iterations=1)
    sla.record("SLA-P1", benchmark.stats.stats.median, unit="s", how="benchmark median")
"""


def test_benchmarks_saved_per_run_and_compared_with_the_previous(pytester, run, evidence_dir):
    pytester.makepyfile(test_bench=BENCH.format(delay=0.01))
    run().assert_outcomes(passed=1)
    pytester.makepyfile(test_bench=BENCH.format(delay=0.03))
    run().assert_outcomes(passed=1)
    first, second = run_dirs(evidence_dir)
    raw = json.loads((second / "benchmark.json").read_text("utf-8"))
    assert len(raw["benchmarks"][0]["stats"]["data"]) == 3  # every round kept
    own = json.loads((second / "sla-evidence.json").read_text("utf-8"))
    (b,) = own["benchmarks"]
    assert b["name"] == "test_bench.py::test_bench"
    assert (b["rounds"], b["mode"]) == (3, "pedantic")
    assert b["previous"]["run"] == first.name
    assert b["change"] > 0.5  # 10 ms -> 30 ms
    assert "benchmark.json" in own["run"]["artifacts"]
    first_own = json.loads((first / "sla-evidence.json").read_text("utf-8"))
    assert "previous" not in first_own["benchmarks"][0]
    assert top(evidence_dir)["benchmarks"] == own["benchmarks"]
    page = (evidence_dir / "sla-evidence.html").read_text("utf-8")
    assert "Benchmarks (pytest-benchmark)" in page
    assert "<span class='reg'>+" in page  # slower than the previous run, in red


def test_a_merge_reads_only_the_latest_complete_run_and_the_runs_after_it():
    def line(run, finished, complete):
        return {"kind": "run", "run": run, "finished": finished, "complete": complete}

    hist = [line("b", "2", True), line("a", "1", False), line("c", "3", False)]
    hist.append({"kind": "measurement", "run": "c", "id": "T1", "value": 1})
    assert history.merge_ids(hist) == ["b", "c"]
    assert history.merge_ids([line("a", "1", False), line("c", "3", False)]) == ["a", "c"]
    assert history.merge_ids([]) is None  # no history: every folder is read


def test_a_pinned_baseline_flags_what_got_worse_since(pytester, run, evidence_dir):
    """Against the stored baseline as well as the previous run: three runs, the first pinned;
    the third is as slow as the second (no change against the previous run) but 50 % slower
    than the baseline, and the report says so."""
    write_suite(pytester, e4=40.0)
    run().assert_outcomes(passed=5)
    assert history.main(["baseline", "--dir", str(evidence_dir)]) == 0
    pinned = json.loads((evidence_dir / history.BASELINE_JSON).read_text(encoding="utf-8"))
    first = run_dirs(evidence_dir)[0].name
    assert pinned["run"] == first and pinned["values"]["E4"] == {"value": 40.0, "verdict": "pass"}
    write_suite(pytester, e4=60.0)
    run().assert_outcomes(passed=5)
    write_suite(pytester, e4=60.0)
    run().assert_outcomes(passed=5)

    data = top(evidence_dir)
    assert data["baseline"]["run"] == first
    page = (evidence_dir / "sla-evidence.html").read_text(encoding="utf-8")
    assert "Regressions against the baseline" in page
    assert "Regressions against the previous run" not in page  # 60 -> 60
    assert "40 → 60 s (+50% worse)" in page


def test_pinning_needs_a_complete_run_or_a_name(tmp_path, capsys):
    assert history.main(["baseline", "--dir", str(tmp_path)]) == 1
    assert "no complete run" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no kept run"):
        history.pin_baseline(tmp_path, "20260101T000000Z-abc")
