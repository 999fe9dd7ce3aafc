"""What a test is (its suite) and what it does to the stack (its impact), read from its
markers: shared by the plugin and the Swarm plugin, so neither imports the other."""

from __future__ import annotations

import pytest

SUITES = ("infra", "e2e", "perf", "recovery", "security")


def impact(item: pytest.Item) -> str:
    """reads, writes or disrupts: what the test does to the stack (see MARKERS)."""
    if item.get_closest_marker("disrupts") or item.get_closest_marker("recovery"):
        return "disrupts"
    if item.get_closest_marker("writes"):
        return "writes"
    return "reads" if item.get_closest_marker("reads") else "writes"


def stack_free(item: pytest.Item) -> bool:
    """A test of the project's own code (tests/unit, tests/component): no acceptance suite, no
    `stack` fixture. It can run beside anything the stack goes through."""
    return not any(item.get_closest_marker(s) for s in SUITES) and "stack" not in item.fixturenames


def needs(item: pytest.Item) -> frozenset[str]:
    """The services the test says it needs (`needs(*services)`)."""
    return frozenset(s for m in item.iter_markers("needs") for s in m.args)


def disrupted(item: pytest.Item) -> frozenset[str] | None:
    """The services a test stops, kills, restarts or reconfigures: none for a test that does not
    disrupt; the named ones for `disrupts("redis", ...)`; None (any service) for a bare
    `disrupts` or a `recovery` test that names none."""
    if impact(item) != "disrupts":
        return frozenset()
    named = frozenset(s for m in item.iter_markers("disrupts") for s in m.args)
    return named or None


def background(item: pytest.Item) -> frozenset[str] | None:
    """For a `background(observes=...)` test: every service it disrupts or relies on while it
    waits (its `disrupts(...)` and `observes`); None for any other test."""
    m = item.get_closest_marker("background")
    if m is None:
        return None
    held = disrupted(item)
    if not held:
        raise ValueError(
            f"{item.nodeid}: a background test names the services it disrupts "
            "(@pytest.mark.disrupts('service', ...))"
        )
    return held | frozenset(m.kwargs.get("observes", ()))


def may_run_beside(item: pytest.Item, lane: pytest.Item) -> bool:
    """Whether `item` may run while the background test `lane` waits: it names what it
    disrupts and what it needs (what it observes), disrupts nothing `lane` holds down or
    observes, needs nothing `lane` holds down, and does not look at every service
    (`whole_stack`). Undeclared means no: such a test runs after the lane."""
    mine, used = disrupted(item), needs(item)
    theirs = background(lane)
    if mine is None or theirs is None or not used or background(item) is not None:
        return False
    if item.get_closest_marker("whole_stack") is not None:
        return False
    return not (mine & theirs) and not (used & (disrupted(lane) or frozenset()))


def may_run_before(item: pytest.Item, held: pytest.Item) -> bool:
    """Whether `item` may run while the settled test `held` waits for its due moment: it
    names what it disrupts, and that is nothing `held` needs or disrupts (it would restart
    them, and their start period would begin anew)."""
    mine = disrupted(item)
    if mine is None or held.get_closest_marker("settled") is None:
        return False
    return not (mine & (needs(held) | (disrupted(held) or frozenset())))
