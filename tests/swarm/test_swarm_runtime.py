"""The Swarm forms of two runtime checks that Swarm cannot pass as written (issue 15,
docs/swarm.md): no-new-privileges is not a Swarm option, and a Swarm memory reservation is a
scheduling guarantee in the service spec, not a soft limit on the container. Needs
`./run deploy swarm` and --stack=swarm; read-only."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.swarm, pytest.mark.security, pytest.mark.reads]

NO_CAPS = "0000000000000000"


@pytest.mark.req("S9")
def test_no_task_can_gain_a_capability(stack, sla):
    """What stands in for no-new-privileges: every capability dropped, the bounding set too, so
    a setuid binary gains none; and no task runs privileged."""
    bad = {}
    for svc in stack.services():
        host = svc.host_config
        caps = svc.exec(["sh", "-c", "awk '/^Cap(Eff|Bnd|Amb):/ {print $2}' /proc/1/status"])
        values = caps.output.split()
        if (
            "ALL" not in (host.get("CapDrop") or [])
            or host.get("Privileged")
            or values != [NO_CAPS] * 3
        ):
            bad[svc.name] = (
                f"CapDrop={host.get('CapDrop')}, Privileged={host.get('Privileged')}, {values}"
            )
    sla.record(
        "S9",
        f"{len(stack.defined) - len(bad)}/{len(stack.defined)} Swarm tasks without capabilities",
        how="Swarm: HostConfig.CapDrop and CapEff/CapBnd/CapAmb of PID 1 all 0 (no-new-privileges "
        "is not a Swarm option: docs/swarm.md)",
    )
    assert not bad, bad


@pytest.mark.req("H2")
def test_every_service_has_limits_and_a_memory_reservation(stack, sla):
    """Limits on the containers (as compose), the memory reservation in the service spec, where
    Swarm keeps it (it admits a task only on a node with that much free)."""
    rows, missing = [], {}
    for svc in stack.services():
        host = svc.host_config
        spec = svc.task_template
        reserved = ((spec.get("Resources") or {}).get("Reservations") or {}).get("MemoryBytes", 0)
        mem, cpus = host.get("Memory", 0), host.get("NanoCpus", 0) / 1e9
        rows.append(f"{svc.name} {mem / 2**20:.0f}M/{cpus:g} cpu, reserved {reserved / 2**20:.0f}M")
        if not (mem and cpus and reserved):
            missing[svc.name] = rows[-1]
    sla.record(
        "H2",
        "; ".join(rows),
        how="Swarm: HostConfig.Memory/NanoCpus, service Reservations.MemoryBytes",
    )
    assert not missing, missing
