"""stackcheck.evidence.thresholds: fixtures/sla.yml parsed and checked against the catalogue."""

from pathlib import Path

import pytest

from stackcheck.evidence.catalogue import Catalogue
from stackcheck.evidence.thresholds import Threshold, ThresholdError, load, parse

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[4]
SLA_FILE = ROOT / "fixtures" / "sla.yml"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load(ROOT / "docs" / "REQUIREMENTS.md")


@pytest.fixture(scope="module")
def small_catalogue() -> Catalogue:
    return Catalogue.parse("## G\n| A1 | one |\n| A2 | two |\n| SLA-P1 | three |\n")


# --- the real file ------------------------------------------------------------------------
def test_real_sla_file_loads_against_real_catalogue(catalogue):
    th = load(SLA_FILE, catalogue)
    assert th  # not empty
    assert set(th) <= set(catalogue.ids())
    assert th["SLA-R3"] == Threshold(
        "SLA-R3", "full system healthy from a cold start", "max", 900.0, "s"
    )
    assert th["SLA-AV1"].bound == "min"
    assert th["SLA-AV1"].value == 99.5
    assert th["T1"].unit == "% healthy"


def test_real_sla_file_statement_targets_have_no_bound(catalogue):
    th = load(SLA_FILE, catalogue)
    x2 = th["X2"]
    assert x2.bound is None
    assert x2.value is None
    assert x2.describe() == x2.target


# --- errors -------------------------------------------------------------------------------
def test_unknown_id_names_it(small_catalogue):
    with pytest.raises(ThresholdError, match=r"'Z9' is not in the requirement catalogue"):
        parse({"Z9": {"target": "x", "max": 1}}, small_catalogue)


def test_unknown_id_is_accepted_without_catalogue():
    assert "Z9" in parse({"Z9": {"target": "x", "max": 1}})


def test_both_max_and_min(small_catalogue):
    with pytest.raises(ThresholdError, match=r"A1 has both 'max' and 'min'"):
        parse({"A1": {"target": "x", "max": 1, "min": 0}}, small_catalogue)


@pytest.mark.parametrize("bad", ["fast", None, [1, 2], {"a": 1}])
def test_non_numeric_bound(small_catalogue, bad):
    with pytest.raises(ThresholdError, match=r"A1\.max must be a number"):
        parse({"A1": {"target": "x", "max": bad}}, small_catalogue)


def test_boolean_bound_is_not_a_number(small_catalogue):
    with pytest.raises(ThresholdError, match="must be a number"):
        parse({"A1": {"target": "x", "max": True}}, small_catalogue)


@pytest.mark.parametrize(
    "spec",
    [
        {"max": 1},  # no target at all
        {"target": 5, "max": 1},  # target not a text
        "just a string",  # not a mapping
        None,
    ],
)
def test_missing_target(small_catalogue, spec):
    with pytest.raises(ThresholdError, match=r"A1 needs a 'target' text"):
        parse({"A1": spec}, small_catalogue)


def test_unknown_key(small_catalogue):
    with pytest.raises(ThresholdError, match=r"A1 has unknown keys \['maximum'\]"):
        parse({"A1": {"target": "x", "maximum": 1}}, small_catalogue)


@pytest.mark.parametrize("data", [None, [], "text", 3])
def test_top_level_must_be_a_mapping(data):
    with pytest.raises(ThresholdError, match="must map requirement IDs"):
        parse(data)


def test_missing_file(tmp_path, small_catalogue):
    missing = tmp_path / "nope.yml"
    with pytest.raises(ThresholdError, match="missing") as info:
        load(missing, small_catalogue)
    assert str(missing) in str(info.value)


def test_load_from_file(tmp_path, small_catalogue):
    f = tmp_path / "sla.yml"
    f.write_text('A1: {target: "quick", max: 2.5, unit: s}\nA2: {target: "said"}\n')
    th = load(f, small_catalogue)
    assert th == {
        "A1": Threshold("A1", "quick", "max", 2.5, "s"),
        "A2": Threshold("A2", "said", None, None, ""),
    }


def test_threshold_error_is_a_value_error():
    assert issubclass(ThresholdError, ValueError)


# --- met_by and describe ------------------------------------------------------------------
def test_max_met_by_including_boundary():
    th = Threshold("A1", "fast", "max", 5.0, "s")
    assert th.met_by(4.99)
    assert th.met_by(5.0)
    assert not th.met_by(5.01)


def test_min_met_by_including_boundary():
    th = Threshold("A1", "up", "min", 99.5, "%")
    assert th.met_by(100.0)
    assert th.met_by(99.5)
    assert not th.met_by(99.49)


def test_zero_bound_is_still_numeric():
    th = Threshold("A1", "none", "max", 0.0)
    assert th.met_by(0.0)
    assert not th.met_by(0.1)


def test_statement_threshold_cannot_be_met_by_a_number():
    th = Threshold("X2", "exit codes 0/1/2")
    with pytest.raises(ValueError, match="X2 has no numeric target"):
        th.met_by(1.0)


@pytest.mark.parametrize(
    ("th", "text"),
    [
        (Threshold("A1", "fast", "max", 5.0, "s"), "≤ 5 s"),
        (Threshold("A1", "up", "min", 99.5, "%"), "≥ 99.5 %"),
        (Threshold("A1", "count", "max", 50.0), "≤ 50"),
        (Threshold("A1", "exit codes 0/1/2"), "exit codes 0/1/2"),
    ],
)
def test_describe(th, text):
    assert th.describe() == text


def test_parsed_values_are_floats_and_unit_text(small_catalogue):
    th = parse({"SLA-P1": {"target": "t", "max": 5, "unit": "s"}}, small_catalogue)["SLA-P1"]
    assert isinstance(th.value, float)
    assert th.describe() == "≤ 5 s"
