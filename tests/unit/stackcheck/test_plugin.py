"""stackcheck.plugin, run in a pytester project: traceability at collection, evidence at the end.

Each run is a subprocess (the plugin loads through its pytest11 entry point) with the real
catalogue and thresholds, `addopts` cleared and the evidence written into the temp project.
"""

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
REQUIREMENTS = ROOT / "docs" / "REQUIREMENTS.md"
SLA_FILE = ROOT / "fixtures" / "sla.yml"


@pytest.fixture
def evidence_dir(pytester) -> Path:
    return pytester.path / "evidence"


@pytest.fixture
def run(pytester, evidence_dir):
    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            f"--requirements={REQUIREMENTS}",
            f"--sla-file={SLA_FILE}",
            f"--evidence-dir={evidence_dir}",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            *args,
        )

    return run


def test_unknown_requirement_id_fails_collection(pytester, run, evidence_dir):
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.req("T99")
        def test_cites_unknown():
            pass

        @pytest.mark.req("T1")
        def test_cites_known():
            pass
        """
    )
    result = run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*requirement traceability:*", "*test_x.py::test_cites_unknown*'T99'*"]
    )
    assert "test_cites_known" not in result.stderr.str()
    result.stdout.no_fnmatch_line("*passed*")  # nothing ran
    # a run refused at collection must not overwrite the evidence of an earlier run
    assert not evidence_dir.exists()


def test_untraced_acceptance_tests_fail_collection(pytester, run, evidence_dir):
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.infra
        def test_untraced():
            pass

        @pytest.mark.security
        @pytest.mark.req()
        def test_cites_nothing():
            pass

        def test_plain_unit_test_needs_no_req():
            pass
        """
    )
    result = run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*requirement traceability:*",
            "*test_x.py::test_untraced: acceptance test without @pytest.mark.req(...)*",
            "*test_x.py::test_cites_nothing: @pytest.mark.req() needs at least one ID*",
        ]
    )
    assert "test_plain_unit_test_needs_no_req" not in result.stderr.str()
    assert not evidence_dir.exists()


def test_passing_req_test_writes_evidence(pytester, run, evidence_dir):
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.req("D1")
        def test_documented():
            pass

        @pytest.mark.req("D2")
        def test_runbooks():
            assert False, "no runbooks"

        def test_plain():
            pass
        """
    )
    result = run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, failed=1)
    data = json.loads((evidence_dir / "sla-evidence.json").read_text(encoding="utf-8"))
    reqs = {r["id"]: r for r in data["requirements"]}
    catalogue = Path(__file__).resolve().parents[3] / "docs" / "REQUIREMENTS.md"
    ids = re.findall(r"^\| ([A-Z][A-Z0-9-]*\d) \|", catalogue.read_text(encoding="utf-8"), re.M)
    assert len(reqs) == len(data["requirements"]) == len(ids) > 70  # every catalogue ID
    assert reqs["D1"]["verdict"] == "pass"
    assert reqs["D1"]["tests"] == {"test_x.py::test_documented": "passed"}
    assert reqs["D2"]["verdict"] == "fail"
    assert reqs["T1"]["verdict"] == "not covered"
    assert reqs["T1"]["target"] == "≥ 100 % healthy"  # from fixtures/sla.yml
    assert data["summary"]["pass"] == 1
    assert data["summary"]["fail"] == 1
    assert data["context"]["pytest exit status"] == "1"
    assert (evidence_dir / "sla-evidence.html").is_file()
    result.stdout.fnmatch_lines(
        ["*SLA evidence*", f"*1 pass, 1 fail, 0 skipped, {len(ids) - 2} not covered*"]
    )


def test_sla_fixture_records_measurement(pytester, run, evidence_dir):
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.req("SLA-P1")
        def test_fast(sla):
            sla.check("SLA-P1", 4.0, how="stopwatch")

        @pytest.mark.req("SLA-P2")
        def test_slow_but_passing(sla):
            sla.record("SLA-P2", 31.0, how="stopwatch")
        """
    )
    result = run()
    result.assert_outcomes(passed=2)
    data = json.loads((evidence_dir / "sla-evidence.json").read_text(encoding="utf-8"))
    reqs = {r["id"]: r for r in data["requirements"]}
    assert reqs["SLA-P1"]["verdict"] == "pass"
    assert reqs["SLA-P1"]["measurements"][0]["test"] == "test_x.py::test_fast"
    assert reqs["SLA-P2"]["verdict"] == "fail"  # the measurement misses ≤ 30 s


def test_run_without_req_markers_writes_no_evidence(pytester, run, evidence_dir):
    pytester.makepyfile(
        test_x="""
        def test_plain():
            pass
        """
    )
    result = run()
    result.assert_outcomes(passed=1)
    assert not evidence_dir.exists()
    result.stdout.no_fnmatch_line("*SLA evidence*")


def test_collect_only_writes_no_evidence(pytester, run, evidence_dir):
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.req("D1")
        def test_documented():
            pass
        """
    )
    result = run("--collect-only")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*1 test collected*"])
    assert not (evidence_dir / "sla-evidence.json").exists()
