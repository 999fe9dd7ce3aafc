"""Which tests run against which platform: the one place that decides it (issue 15).

Registered by stackcheck.plugin. Against a Swarm stack (--stack=swarm), a test that disrupts the
stack through the Compose lifecycle (stop/start a container, `docker compose up/down`) skips:
Swarm replaces a stopped task instead of waiting for `start`, so such a test would measure the
orchestrator, not the service; tests/swarm proves recovery in Swarm terms. A few tests read
something only the Compose CLI or a one-engine stack has: they are named in NOT_ON_SWARM with the
reason. The other way round, tests marked `swarm` (all of tests/swarm) need a deployed swarm
stack and skip, saying how to get one, in every other mode.
"""

from __future__ import annotations

import os

import pytest

from stackcheck.markers import SUITES, impact
from stackcheck.mode import Mode, ModeError, select_mode

SWARM_MARKER = "swarm: needs a Swarm stack (`./run deploy swarm`, then --stack=swarm)"
RECOVERY_ON_SWARM = (
    "disrupts through the Compose lifecycle (stop/start a container, compose up/down); on "
    "Swarm the orchestrator replaces the task: tests/swarm proves recovery in Swarm terms"
)
# node id prefix -> why the test does not apply to a Swarm stack. Keep each reason specific.
_OPERATOR = "tests/infra/test_operator_checks.py::"
_COMPOSE_LINE = (
    "the review's one-line check is a `docker compose {} ...` command in stack/, and a Swarm "
    "stack is no Compose project (docs/swarm.md gives the Swarm form); {} runs on Swarm in {}"
)
NOT_ON_SWARM: dict[str, str] = {
    f"{_OPERATOR}test_operator_check_passes_on_the_running_stack[T2]": _COMPOSE_LINE.format(
        "exec postgres", "T2", "tests/infra/test_postgres.py"
    ),
    f"{_OPERATOR}test_operator_check_passes_on_the_running_stack[T3]": _COMPOSE_LINE.format(
        "exec backup", "T3", "tests/recovery/test_backup.py (skipped: disrupts)"
    ),
    f"{_OPERATOR}test_operator_check_passes_on_the_running_stack[T6]": _COMPOSE_LINE.format(
        "logs praxis-mailer", "T6", "tests/e2e/test_mail_flow.py"
    ),
    "tests/security/test_runtime_hardening.py::test_capabilities_dropped_and_no_new_privileges": (
        "no-new-privileges is not a Swarm option (docs/swarm.md); what stands in (no capability "
        "in the bounding set either) is checked by tests/swarm/test_swarm_runtime.py"
    ),
    "tests/security/test_runtime_hardening.py::test_every_container_has_limits_and_reservations": (
        "a Swarm memory reservation is a scheduling guarantee in the service spec, not the "
        "container's MemoryReservation; tests/swarm/test_swarm_runtime.py checks it there"
    ),
    "tests/e2e/test_external_mode.py::test_external_mode_leaves_a_running_stack_untouched": (
        "--stack=external observes a Compose project (com.docker.compose.project); it does not "
        "recognise a Swarm stack namespace, so the inner run would observe nothing (SC1 on Swarm "
        "is not built)"
    ),
    f"{_OPERATOR}test_operator_check_t8_on_a_throwaway_project": "T8 brings up a throwaway "
    "Compose project (`docker compose down/up`) from the stack's files, which on Swarm include "
    "the overlay's overlay networks: Compose lifecycle, not the Swarm stack's",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", SWARM_MARKER)


def _mode(config: pytest.Config) -> Mode | None:
    try:
        return select_mode(config.option.stackcheck_mode, os.environ)
    except ModeError:
        return None  # reported by the stack fixture


def reason_on_swarm(nodeid: str, impact: str) -> str | None:
    """Why a test skips against a Swarm stack, or None when it runs there."""
    for prefix, why in NOT_ON_SWARM.items():
        if nodeid.startswith(prefix):
            return why
    if impact == "disrupts" and not nodeid.startswith("tests/swarm/"):
        return RECOVERY_ON_SWARM
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    swarm = _mode(config) is Mode.SWARM
    for item in items:
        if item.get_closest_marker("swarm") is not None and not swarm:
            item.add_marker(
                pytest.mark.skip(
                    reason="needs a Swarm stack: `./run deploy swarm`, then --stack=swarm"
                )
            )
            continue
        if not swarm or not any(item.get_closest_marker(s) for s in SUITES):
            continue
        why = reason_on_swarm(item.nodeid, impact(item))
        if why:
            item.add_marker(pytest.mark.skip(reason=f"not on Swarm: {why}"))
