"""stackcheck.due: when the scheduler sends a held `settled(due=...)` test, and what a worker
publishes for it."""

import json
from types import SimpleNamespace

import pytest

from stackcheck import due

pytestmark = [pytest.mark.unit, pytest.mark.req("SC2")]


@pytest.mark.parametrize(
    ("at", "send"),
    [
        (100 + 2 + 1.5, True),  # starts 1.5 s before its moment: one more test would miss it
        (100 + 2 + 2.9, True),  # ... 2.9 s: the next test (2 s) would leave 0.9 s, too close
        (100 + 2 + 3.1, False),  # 3.1 s: the next test still leaves it 1.1 s
        (100 + 2 + 20.0, False),
        (100 + 2 + 0.5, False),  # 0.5 s: a test running 0.5 s long would miss it; 30.5 s on
        (100 + 1.0, False),  # the test starting now ends past the moment: the next, 29 s on
        (100 + 2 - 28.5, True),  # missed by 28.5 s: the next comes 1.5 s after it would start
    ],
)
def test_send_now_starts_it_before_its_moment_and_never_a_test_too_early(at, send):
    assert due.send_now((at, 30.0), starting=2.0, later=2.0, now=100.0) is send


def test_without_a_period_a_missed_moment_never_comes_again():
    assert due.send_now((90.0, 0.0), starting=2.0, later=2.0, now=100.0) is False


def test_the_estimate_is_the_median_of_the_early_tests_run():
    assert due.estimate([]) == due.DEFAULT_ESTIMATE
    assert due.estimate([1.0, 16.0, 2.0]) == 2.0


def _config(dues, alone):
    config = SimpleNamespace(stash={})
    due.remember(config, dues, frozenset(alone))
    return config


def test_the_worker_publishes_after_an_alone_test_and_not_after_the_held_one(tmp_path):
    config = _config({"t::held": lambda stack: (5.0, 30.0)}, {"t::early", "t::held"})
    due.publish(config, tmp_path, "u1", "t::shared", stack=None)
    assert not due.path(tmp_path, "u1").exists(), "published after a shared test"
    due.publish(config, tmp_path, "u1", "t::early", stack=None)
    at, period = due.read(tmp_path, "u1", "t::held", since=0)
    data = json.loads(due.path(tmp_path, "u1").read_text())
    assert period == 30.0 and at == pytest.approx(data["at"] + 5.0, abs=0.1)
    assert due.read(tmp_path, "u1", "t::held", since=data["at"] + 1) is None, "stale"
    due.publish(config, tmp_path, "u1", "t::held", stack=None)
    assert config.stash[due.due_key] == {}, "the held test ran: nothing left to publish"


def test_a_due_function_that_fails_publishes_no_moment(tmp_path):
    def broken(stack):
        raise RuntimeError("no such container")

    config = _config({"t::held": broken}, {"t::early"})
    due.publish(config, tmp_path, "u2", "t::early", stack=None)
    assert due.read(tmp_path, "u2", "t::held", since=0) is None
