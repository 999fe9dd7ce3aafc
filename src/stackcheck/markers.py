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
