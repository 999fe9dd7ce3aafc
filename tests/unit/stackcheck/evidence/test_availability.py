"""evidence.availability: a monthly target judged over the history there is (SLA-AV1..AV3)."""

import pytest

from stackcheck.evidence.availability import MONTH_S, duration, judge
from stackcheck.evidence.recorder import FAIL, PASS, PROVISIONAL

pytestmark = pytest.mark.unit

H = 3600.0


def test_full_month_is_judged_against_the_target():
    j = judge(0.996, MONTH_S, 99.5)
    assert (j.value, j.verdict) == (99.6, PASS)
    assert judge(0.994, MONTH_S + H, 99.5).verdict == FAIL


def test_short_window_is_provisional_with_projection_never_a_pass():
    j = judge(0.9999, 2 * H, 99.5)
    assert j.verdict == PROVISIONAL
    assert j.value == "99.990 % over 2.0 h of 30 d; projection 99.990 %"
    assert "provisional: 30 d not yet seen" in j.text
    assert "downtime 1 s of the 3.6 h budget" in j.text


def test_short_window_below_target_is_still_provisional_while_budget_remains():
    # 90 % over 1 h: 6 min down of a 3.6 h budget; the month can still make 99.5 %
    j = judge(0.9, H, 99.5)
    assert j.verdict == PROVISIONAL
    assert "projection for 30 d at this rate 90.000 %" in j.text


def test_short_window_fails_once_the_months_budget_is_spent():
    # 50 % over 10 h: 5 h down, more than 3.6 h (0.5 % of 30 d)
    j = judge(0.5, 10 * H, 99.5)
    assert j.verdict == FAIL
    assert "at most 99.306 % for 30 d whatever follows" in j.text


@pytest.mark.parametrize(
    ("s", "text"), [(15, "15 s"), (600, "10 min"), (3 * H, "3.0 h"), (MONTH_S, "30 d")]
)
def test_duration(s, text):
    assert duration(s) == text
