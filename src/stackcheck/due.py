"""When a `settled(due=...)` test is best started, under `pytest -n N`.

Some tests wait on a period the stack keeps: the SLA-H1 test stops Redis and waits for three
failed health checks, 30 s apart, so it costs 0-30 s more depending on how far the next probe
is when it starts. Nothing else can run while it holds Redis down, but before it starts the
first lane can run other tests. So such a test names a function (`due`) that says, from the
running stack, in how many seconds it is best started and the period after which that moment
comes again; the scheduler holds it back and runs the tests that leave its services alone
(`early`) until the moment is near, then sends it.

The worker knows the stack and the controller does not (see stackcheck.parallel), so the worker
that ran an alone test publishes the due moments to a file right after it, and the scheduler
reads them when it hands out the next test. A worker runs a test only once it holds the next
one, so the test sent now starts after the one the worker is starting: its expected duration
(`estimate`) is the scheduler's to guess, from the early tests that have run.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# a `due` function: (the Stack, or None where there is none) -> (seconds, period) or None
Due = Callable[[Any], tuple[float, float] | None]
due_key = pytest.StashKey[dict[str, Due]]()  # on a worker: the held tests not yet run
alone_key = pytest.StashKey[frozenset[str]]()  # ... published after these tests only
DEFAULT_ESTIMATE = 2.0  # s: an early test's duration before any has run
SAFETY = 1.0  # s: a held test is sent only if it would start this much before its moment


def due_of(item: pytest.Item) -> Due | None:
    """The `due` function of a `settled(due=...)` test, or None."""
    m = item.get_closest_marker("settled")
    fn = m.kwargs.get("due") if m is not None else None
    if fn is not None and not callable(fn):
        raise pytest.UsageError(f"{item.nodeid}: settled(due=...) takes a function")
    return fn


def path(directory: Path, uid: str) -> Path:
    return directory / f"due-{uid}.json"


def remember(config: pytest.Config, dues: dict[str, Due], alone: frozenset[str]) -> None:
    """On a worker at collection: the held tests' due functions, and after which tests to ask."""
    config.stash[due_key] = dict(dues)
    config.stash[alone_key] = alone


def publish(config: pytest.Config, directory: Path, uid: str, ran: str, stack: Any) -> None:
    """On a worker, after test `ran`: the held tests' due moments (absolute times), to the file
    the scheduler reads. A function that fails publishes nothing for its test: it is sent at
    once, as if it named no due."""
    dues = config.stash.get(due_key, {})
    dues.pop(ran, None)
    if not dues or ran not in config.stash.get(alone_key, frozenset()):
        return
    moments: dict[str, list[float] | None] = {}
    for nodeid, fn in dues.items():
        try:
            got = fn(stack)
        except Exception:  # the stack is not as expected: the test itself will say why
            got = None
        now = time.time()
        moments[nodeid] = [now + max(0.0, float(got[0])), float(got[1])] if got else None
    target = path(directory, uid)
    tmp = target.with_name(f"{target.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"at": time.time(), "due": moments}), encoding="utf-8")
    tmp.replace(target)


def read(directory: Path, uid: str, nodeid: str, since: float) -> tuple[float, float] | None:
    """The due moment of `nodeid` (absolute time, period) as published after `since`, or None
    (nothing published since, or no moment known)."""
    try:
        data = json.loads(path(directory, uid).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("at", 0) < since:
        return None
    got = (data.get("due") or {}).get(nodeid)
    return (float(got[0]), float(got[1])) if got else None


def estimate(durations: list[float]) -> float:
    """An early test's expected duration: the median of those that have run."""
    return statistics.median(durations) if durations else DEFAULT_ESTIMATE


def send_now(moment: tuple[float, float], starting: float, later: float, now: float) -> bool:
    """Whether the held test is sent now: it would start after the test now starting (expected
    `starting` s) at least SAFETY s before its moment (a test that runs longer than expected
    must not make it miss the moment: it would wait a whole period), and one more early test
    (expected `later` s) would leave it less than that. A moment it would start too close to
    comes again one period later, while more early tests run."""
    at, period = moment
    wait = at - (now + starting)
    if wait < SAFETY:
        wait += period * math.ceil((SAFETY - wait) / period) if period > 0 else float("inf")
    return wait < later + SAFETY
