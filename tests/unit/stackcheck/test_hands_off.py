"""External mode is hands-off by declaration (SC1): the plugin skips what writes or disrupts
before any fixture runs, so a test cannot touch a stack that is not ours by forgetting a skip."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.req("SC1")]

ROOT = Path(__file__).resolve().parents[3]

TESTS = """
import pytest

@pytest.mark.infra
@pytest.mark.req("T1")
@pytest.mark.reads
def test_reads():
    pass

@pytest.mark.infra
@pytest.mark.req("T1")
def test_undeclared():
    pass

@pytest.mark.infra
@pytest.mark.req("T1")
@pytest.mark.reads
@pytest.mark.writes
def test_reads_and_writes():
    pass

@pytest.mark.req("T8")
@pytest.mark.recovery
def test_recovery():
    pass

@pytest.mark.infra
@pytest.mark.req("T8")
@pytest.mark.disrupts
@pytest.mark.reads
def test_disrupts():
    pass

@pytest.mark.unit
def test_unit():
    pass
"""


@pytest.fixture
def run(pytester, monkeypatch):
    pytester.makepyfile(test_x=TESTS)
    monkeypatch.delenv("STACKCHECK_STACK", raising=False)

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            f"--requirements={ROOT / 'docs' / 'REQUIREMENTS.md'}",
            f"--sla-file={ROOT / 'fixtures' / 'sla.yml'}",
            f"--evidence-dir={pytester.path / 'evidence'}",
            "-p", "no:cacheprovider", "-o", "addopts=", "-rs", *args,
        )  # fmt: skip

    return run


def test_external_runs_only_what_reads(run):
    result = run("--stack=external")
    result.assert_outcomes(passed=2, skipped=4)  # test_reads, test_unit
    result.stdout.fnmatch_lines(
        [
            "SKIPPED*writes test data into a stack that is not ours: --allow-writes runs it",
            "SKIPPED*writes test data into a stack that is not ours*",
            "SKIPPED*disrupts the stack: never in external mode*",
            "SKIPPED*disrupts the stack: never in external mode*",
        ]
    )


def test_allow_writes_never_allows_disruption(run):
    result = run("--stack=external", "--allow-writes")
    result.assert_outcomes(passed=4, skipped=2)


def test_own_stack_runs_everything(run):
    """Outside external mode the markers change nothing (these tests use no stack fixture)."""
    result = run("--stack=reuse")
    result.assert_outcomes(passed=6)
