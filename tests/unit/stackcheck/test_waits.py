"""stackcheck.waits: wait_for with a deadline and a self-explaining timeout."""

import time

import pytest

from stackcheck.waits import WaitTimeout, wait_for

pytestmark = pytest.mark.unit


def counter(succeed_on: int, value="ready"):
    """A probe that returns falsy values until its `succeed_on`-th call."""
    calls = []

    def probe():
        calls.append(1)
        return value if len(calls) >= succeed_on else None

    probe.calls = calls
    return probe


def test_returns_result_and_seconds():
    probe = counter(3)
    result, took = wait_for(probe, timeout=1, interval=0.05, what="thing")
    assert result == "ready"
    assert len(probe.calls) == 3
    assert 0.08 <= took < 1.0  # two waits of 0.05 s


def test_immediate_success_probes_once():
    probe = counter(1, value=42)
    result, took = wait_for(probe, timeout=1, interval=0.05, what="answer")
    assert result == 42
    assert len(probe.calls) == 1
    assert 0 <= took < 0.5


def test_exceptions_count_as_not_yet():
    calls = []

    def probe():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("port closed")
        return {"status": "ok"}

    result, _ = wait_for(probe, timeout=1, interval=0.05, what="port")
    assert result == {"status": "ok"}
    assert len(calls) == 3


def test_custom_ok_predicate():
    values = iter([1, 2, 3, 4, 5])
    result, _ = wait_for(
        lambda: next(values), timeout=1, interval=0.05, what="n", ok=lambda n: n >= 3
    )
    assert result == 3


def test_timeout_reports_what_and_last_state():
    states = iter(["starting", "starting", "unhealthy"] + ["unhealthy"] * 100)
    start = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        wait_for(
            lambda: next(states),
            timeout=0.3,
            interval=0.05,
            what="postgres healthy",
            ok=lambda s: s == "healthy",
        )
    took = time.monotonic() - start
    msg = str(info.value)
    assert "postgres healthy" in msg
    assert "last seen: 'unhealthy'" in msg
    assert "0.3 s" in msg
    assert 0.3 <= took < 1.0


def test_timeout_reports_last_exception():
    def probe():
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    with pytest.raises(WaitTimeout) as info:
        wait_for(probe, timeout=0.2, interval=0.05, what="redis port 6379")
    msg = str(info.value)
    assert "redis port 6379" in msg
    assert "ConnectionRefusedError: [Errno 111] Connection refused" in msg


def test_timeout_with_falsy_results():
    with pytest.raises(WaitTimeout, match=r"waiting for empty queue; last seen: \[\]"):
        wait_for(lambda: [], timeout=0.2, interval=0.05, what="empty queue")


def test_wait_timeout_is_an_assertion_error():
    assert issubclass(WaitTimeout, AssertionError)
