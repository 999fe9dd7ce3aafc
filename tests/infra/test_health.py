"""T1: every service of the stack is running and healthy by its own health check."""

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.reads]


@pytest.mark.req("T1")
def test_every_service_running_and_healthy(stack, sla):
    """The docker health status, not just "Up": a service without a health check fails too,
    since "running" says nothing about whether it serves."""
    states = {svc.name: (svc.state(), svc.health()) for svc in stack.services()}
    healthy = sorted(
        n for n, (state, health) in states.items() if state == "running" and health == "healthy"
    )
    share = 100.0 * len(healthy) / len(states)
    detail = ", ".join(f"{n}={s}/{h}" for n, (s, h) in sorted(states.items()))
    sla.record("T1", share, how=f"docker inspect State.Health of {len(states)} services: {detail}")
    assert len(healthy) == len(states), f"not running and healthy: {detail}"
