"""stackcheck.evidence.recorder: verdicts per requirement, and the JSON and HTML report."""

import json

import pytest

from stackcheck.evidence.catalogue import Catalogue
from stackcheck.evidence.recorder import (
    FAIL,
    NOT_COVERED,
    PASS,
    PROVISIONAL,
    SKIPPED,
    Entry,
    Evidence,
    Measurement,
)
from stackcheck.evidence.thresholds import Threshold

pytestmark = pytest.mark.unit

CATALOGUE_TEXT = """\
## P — performance
| ID | requirement |
|---|---|
| P1 | one mail in < 5 s |
| P2 | mailer exit codes |
## Q — quality
| Q1 | dashboards <provisioned> & loaded |
| Q2 | availability 99.5 % |
"""

THRESHOLDS = {
    "P1": Threshold("P1", "one mail processed", "max", 5.0, "s"),
    "P2": Threshold("P2", "exit codes 0/1/2"),
    "Q2": Threshold("Q2", "available", "min", 99.5, "%"),
}


@pytest.fixture
def ev() -> Evidence:
    return Evidence(Catalogue.parse(CATALOGUE_TEXT), THRESHOLDS)


def entry(**kw) -> Entry:
    return Entry("P1", "G", "text", "target", **kw)


# --- Entry.verdict ------------------------------------------------------------------------
def test_verdict_not_covered():
    assert entry().verdict == NOT_COVERED


def test_verdict_pass():
    assert entry(tests={"t::a": "passed", "t::b": "passed"}).verdict == PASS


def test_verdict_fail_if_any_test_failed():
    assert entry(tests={"t::a": "passed", "t::b": "failed"}).verdict == FAIL


def test_verdict_skipped_if_only_skips():
    assert entry(tests={"t::a": "skipped"}).verdict == SKIPPED


def test_verdict_pass_wins_over_skip():
    assert entry(tests={"t::a": "skipped", "t::b": "passed"}).verdict == PASS


def test_failed_measurement_fails_a_passed_test():
    m = Measurement(7.0, "s", "stopwatch", "t::a", verdict=FAIL)
    assert entry(tests={"t::a": "passed"}, measurements=[m]).verdict == FAIL


# --- Evidence -----------------------------------------------------------------------------
def test_entries_for_every_catalogue_id_with_target(ev):
    assert list(ev.entries) == ["P1", "P2", "Q1", "Q2"]
    assert ev.entries["P1"].target == "≤ 5 s"
    assert ev.entries["P2"].target == "exit codes 0/1/2"  # statement threshold
    assert ev.entries["Q1"].target == "dashboards <provisioned> & loaded"  # no threshold
    assert ev.entries["Q2"].group == "Q — quality"


def test_outcome_pass(ev):
    ev.outcome("P2", "t::a", "passed")
    assert ev.entries["P2"].verdict == PASS


def test_failed_outcome_is_sticky_over_later_pass(ev):
    ev.outcome("P2", "t::a", "failed")  # e.g. the call phase
    ev.outcome("P2", "t::a", "passed")  # a later phase must not hide it
    assert ev.entries["P2"].tests == {"t::a": "failed"}
    assert ev.entries["P2"].verdict == FAIL


def test_later_failure_replaces_pass(ev):
    ev.outcome("P2", "t::a", "passed")  # call
    ev.outcome("P2", "t::a", "failed")  # teardown error
    assert ev.entries["P2"].verdict == FAIL


def test_outcome_for_unknown_id_raises(ev):
    with pytest.raises(KeyError):
        ev.outcome("Z9", "t::a", "passed")


def test_numeric_measurement_meeting_target(ev):
    m = ev.measure("P1", 4.2, how="stopwatch", test="t::a")
    assert m.verdict == PASS
    assert m.unit == "s"  # taken from the threshold
    ev.outcome("P1", "t::a", "passed")
    assert ev.entries["P1"].verdict == PASS


def test_numeric_measurement_missing_target_fails_passed_test(ev):
    m = ev.measure("P1", 5.5, how="stopwatch", test="t::a")
    assert m.verdict == FAIL
    ev.outcome("P1", "t::a", "passed")
    assert ev.entries["P1"].verdict == FAIL


def test_min_threshold_measurement(ev):
    assert ev.measure("Q2", 99.5, how="uptime", test="t").verdict == PASS
    assert ev.measure("Q2", 99, how="uptime", test="t").verdict == FAIL  # int counts too


def test_explicit_unit_kept(ev):
    assert ev.measure("P1", 3000, unit="ms", how="x").unit == "ms"


def test_string_and_untargeted_measurements_are_not_judged(ev):
    assert ev.measure("P1", "about 4 s", how="log").verdict is None
    assert ev.measure("P2", 1, how="exit code").verdict is None  # statement target
    assert ev.measure("Q1", 2.0, how="count").verdict is None  # no threshold at all
    ev.outcome("P1", "t::a", "passed")
    assert ev.entries["P1"].verdict == PASS


def test_summary_counts(ev):
    ev.outcome("P1", "t::a", "passed")
    ev.outcome("P2", "t::b", "failed")
    ev.outcome("Q1", "t::c", "skipped")
    assert ev.summary() == {PASS: 1, FAIL: 1, SKIPPED: 1, NOT_COVERED: 1}


def test_summary_of_untouched_evidence(ev):
    assert ev.summary() == {PASS: 0, FAIL: 0, SKIPPED: 0, NOT_COVERED: 4}


# --- write() ------------------------------------------------------------------------------
def test_write_json_lists_every_id(ev, tmp_path):
    ev.outcome("P1", "tests/perf/test_mail.py::test_one", "passed")
    ev.measure("P1", 3.25, how="stopwatch", test="tests/perf/test_mail.py::test_one")
    ev.outcome("Q2", "tests/x.py::test_av", "passed")
    ev.measure("Q2", 98.0, how="uptime", test="tests/x.py::test_av")
    ev.context["stack mode"] = "reuse"

    jpath, hpath = ev.write(tmp_path / "out")
    assert jpath == tmp_path / "out" / "sla-evidence.json"
    assert hpath == tmp_path / "out" / "sla-evidence.html"

    data = json.loads(jpath.read_text(encoding="utf-8"))
    reqs = {r["id"]: r for r in data["requirements"]}
    assert list(reqs) == ["P1", "P2", "Q1", "Q2"]
    assert reqs["P1"]["target"] == "≤ 5 s"
    assert reqs["P1"]["measurements"][0]["value"] == 3.25
    assert reqs["P1"]["measurements"][0]["unit"] == "s"
    assert reqs["P1"]["verdict"] == PASS
    assert reqs["P1"]["covered"] is True
    assert reqs["P1"]["tests"] == {"tests/perf/test_mail.py::test_one": "passed"}
    assert reqs["Q2"]["verdict"] == FAIL
    assert reqs["Q1"]["verdict"] == NOT_COVERED
    assert reqs["Q1"]["covered"] is False
    assert reqs["Q1"]["measurements"] == []
    assert data["summary"] == {PASS: 1, FAIL: 1, SKIPPED: 0, NOT_COVERED: 2}
    assert data["context"] == {"stack mode": "reuse"}
    assert data["generated"]


def test_write_html_escapes_measured_strings(ev, tmp_path):
    ev.outcome("P1", "t::<b>", "passed")
    ev.measure("P1", "<script>alert(1)</script>", how="<i>how</i>", test="t::<b>")
    ev.context["<ctx>"] = "<script>x</script>"
    _, hpath = ev.write(tmp_path)
    page = hpath.read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<i>how</i>" not in page
    assert "&lt;i&gt;how&lt;/i&gt;" in page
    assert "&lt;ctx&gt;" in page
    # the requirement text is escaped too
    assert "dashboards &lt;provisioned&gt; &amp; loaded" in page


def test_write_html_shows_every_id_and_verdict(ev, tmp_path):
    ev.outcome("P1", "t::a", "passed")
    ev.measure("P1", 1.23456, how="stopwatch", test="t::a")
    _, hpath = ev.write(tmp_path)
    page = hpath.read_text(encoding="utf-8")
    for rid in ("P1", "P2", "Q1", "Q2"):
        assert f"<b>{rid}</b>" in page
    assert "1.235 s</b> ✓" in page  # floats shown with 4 significant digits, judged
    assert "no test covers this requirement yet" in page
    assert "1 pass, 0 fail, 0 skipped, 3 not covered" in page


def test_write_creates_directory_and_overwrites(ev, tmp_path):
    target = tmp_path / "a" / "b"
    ev.write(target)
    ev.outcome("P1", "t::a", "passed")
    jpath, _ = ev.write(target)
    data = json.loads(jpath.read_text(encoding="utf-8"))
    assert data["summary"][PASS] == 1


# --- provisional verdicts, samples, numeric targets in the JSON (issue 14) ----------------------
def test_provisional_measurement_makes_a_passing_requirement_provisional(ev):
    m = ev.measure("Q2", "99.98 % over 2 h", how="avg_over_time", test="t", verdict=PROVISIONAL)
    assert m.verdict == PROVISIONAL
    ev.outcome("Q2", "t", "passed")
    assert ev.entries["Q2"].verdict == PROVISIONAL
    assert ev.summary()[PROVISIONAL] == 1


def test_a_failure_beats_provisional(ev):
    ev.measure("Q2", 99.0, how="a", test="t")  # judged: fail
    ev.measure("Q2", "so far", how="b", test="t", verdict=PROVISIONAL)
    assert ev.entries["Q2"].verdict == FAIL


def test_caller_verdict_overrides_the_numeric_judgement(ev):
    assert ev.measure("Q2", 99.9, how="2 h of 30 d", verdict=PROVISIONAL).verdict == PROVISIONAL


def test_unknown_caller_verdict_is_refused(ev):
    with pytest.raises(ValueError, match="pass, fail or provisional"):
        ev.measure("Q2", 1.0, how="x", verdict="skipped")


def test_summary_keeps_four_keys_without_provisional(ev):
    assert set(ev.summary()) == {PASS, FAIL, SKIPPED, NOT_COVERED}


def test_samples_kinds(ev):
    d = ev.samples("P1", [0.1, 0.2], how="per mail", test="t")
    assert (d.kind, d.unit, d.values) == ("distribution", "s", [0.1, 0.2])  # unit from target
    t = ev.samples("P1", (1, 2, 3), kind="timeline", test="t")
    assert (t.kind, t.values) == ("timeline", [1.0, 2.0, 3.0])
    lab = ev.samples("Q2", {"redis": 3, "postgres": 7.5}, test="t")
    assert (lab.kind, lab.values) == ("labelled", {"redis": 3.0, "postgres": 7.5})
    assert ev.entries["P1"].verdict == NOT_COVERED  # samples judge nothing


def test_samples_refuse_a_kind_that_does_not_fit(ev):
    with pytest.raises(ValueError):
        ev.samples("P1", [1.0], kind="labelled")
    with pytest.raises(ValueError):
        ev.samples("P1", {"a": 1.0}, kind="timeline")
    with pytest.raises(KeyError):
        ev.samples("Z9", [1.0])


def test_json_carries_samples_and_the_numeric_target(ev, tmp_path):
    ev.samples("P1", [0.5, 0.7], how="per mail", test="t::a")
    jpath, _ = ev.write(tmp_path)
    reqs = {r["id"]: r for r in json.loads(jpath.read_text(encoding="utf-8"))["requirements"]}
    assert reqs["P1"]["samples"] == [
        {
            "values": [0.5, 0.7],
            "unit": "s",
            "how": "per mail",
            "test": "t::a",
            "kind": "distribution",
        }
    ]
    assert (reqs["P1"]["bound"], reqs["P1"]["target_value"], reqs["P1"]["unit"]) == (
        "max",
        5.0,
        "s",
    )
    assert (reqs["Q1"]["bound"], reqs["Q1"]["target_value"]) == (None, None)
    # the keys `./run bench` and older readers use are all still there
    assert {
        "id",
        "group",
        "requirement",
        "target",
        "tests",
        "measurements",
        "verdict",
        "covered",
    } <= set(reqs["P1"])
