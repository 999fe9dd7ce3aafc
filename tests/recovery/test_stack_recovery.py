"""Recovery of the whole stack: T8 and E3 (data survives down; core first, then everything),
SLA-R3 (cold start to all healthy), SLA-R1 (each service's start to healthy), SLA-R2 (each
long-running service SIGKILLed, back to healthy)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import datetime

import pytest

from stackcheck.waits import wait_for

pytestmark = [pytest.mark.recovery, pytest.mark.needs("postgres", "redis")]
CORE = ("postgres", "redis")


def _ts(value: str) -> float:
    """Docker's RFC 3339 timestamps with nanoseconds, as epoch seconds."""
    head, _, frac = value.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head + "+00:00").timestamp()
    return base + float("0." + (frac[:6] or "0"))


def time_to_healthy(svc) -> float | None:
    """Seconds from the container's start to its first passing health probe."""
    started = svc.started_at.timestamp()
    passes = [
        _ts(p["End"])
        for p in svc.health_log()
        if p.get("ExitCode") == 0 and _ts(p["End"]) >= started
    ]
    return min(passes) - started if passes else None


def _write_marker(stack) -> tuple[str, set[str]]:
    """A row in the postgres database and a Redis key (T8); the databases there are now."""
    marker = uuid.uuid4().hex
    with stack.service("postgres").connect() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS stackcheck_t8 (marker text PRIMARY KEY, "
            "written timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO stackcheck_t8 (marker) VALUES (%s)", (marker,))
        conn.commit()
        dbs = {
            r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
        }
    r = stack.service("redis").client()
    r.set(f"stackcheck:t8:{marker}", marker)
    r.close()
    return marker, dbs


@pytest.mark.req("E3", "T8", "SLA-R1", "SLA-R3")
def test_data_survives_down_core_first_then_everything(stack, praxis_db, sla):
    """One `down` and one `up` for four requirements (a down/up cycle costs ~15 s): a marker
    row and a Redis key written before `down` are there when the core is up again (T8), with
    every database and the praxis mails (E3); then the rest comes up (SLA-R3: from the cold
    start to all healthy), each service timed from its start to its first passing probe
    (SLA-R1)."""
    marker, dbs_before = _write_marker(stack)
    mails_before = praxis_db.query("SELECT count(*) FROM emails")[0][0]
    stack.down()
    took_core = stack.up(timeout=sla.threshold("SLA-R1").value * 2, services=CORE)
    with stack.service("postgres").connect() as conn:
        dbs = {
            r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
        }
        kept = conn.execute(
            "SELECT count(*) FROM stackcheck_t8 WHERE marker = %s", (marker,)
        ).fetchone()[0]
    r = stack.service("redis").client()
    redis_kept = r.get(f"stackcheck:t8:{marker}")
    r.close()
    assert dbs == dbs_before, f"databases before {sorted(dbs_before)}, after {sorted(dbs)}"
    assert {"praxis", "ecom", "n8n"} <= dbs, dbs
    assert kept == 1, "the marker row written before `down` is gone"
    assert redis_kept == marker, "the redis key written before `down` is gone (AOF not persisted?)"
    assert praxis_db.query("SELECT count(*) FROM emails")[0][0] == mails_before
    took_all = stack.up(timeout=sla.threshold("SLA-R3").value)
    assert not stack.unhealthy(), stack.unhealthy()
    sla.record(
        "T8",
        f"{len(dbs)} databases, marker row and redis key kept",
        how="wrote a row and a redis key, `docker compose down` (volumes kept), `up --wait` "
        f"of {', '.join(CORE)}; databases {', '.join(sorted(dbs))}",
    )
    sla.record(
        "E3",
        took_core + took_all,
        unit="s",
        how=f"down; core ({', '.join(CORE)}) up in {took_core:.0f} s with databases and "
        f"{mails_before} praxis mails intact; the rest up in {took_all:.0f} s",
    )
    sla.check(
        "SLA-R3",
        took_core + took_all,
        how=f"after `down` (containers recreated; images and volumes kept): `up --wait` of "
        f"{', '.join(CORE)} {took_core:.1f} s, then of all {len(stack.defined)} services "
        f"{took_all:.1f} s (the data checks between them not counted)",
    )
    per_service = {svc.name: time_to_healthy(svc) for svc in stack.services()}
    missing = [n for n, t in per_service.items() if t is None]
    assert not missing, f"no passing health probe since start: {missing}"
    worst = max(per_service, key=per_service.get)
    sla.samples(
        "SLA-R1",
        per_service,
        unit="s",
        how="per service: container start to first passing health probe, after down/up",
    )
    sla.check(
        "SLA-R1",
        per_service[worst],
        how="start to first passing health probe (docker inspect Health.Log), worst of "
        + ", ".join(f"{n} {t:.0f} s" for n, t in sorted(per_service.items())),
    )


@pytest.mark.req("SLA-R2")
def test_every_service_sigkilled_comes_back_healthy(stack, sla):
    """All long-running services SIGKILLed at once (a crash, not a `docker kill`, which a restart
    policy treats as a manual stop); each is timed until healthy again."""
    limit = sla.threshold("SLA-R2").value
    services = [s for s in stack.services() if s.restart_policy in ("unless-stopped", "always")]
    assert services
    before = {s.name: s.restart_count for s in services}
    pids = [s.pid for s in services]
    try:  # signal 0 checks the permission: decided before any service is killed, not halfway
        for pid in pids:
            os.kill(pid, 0)
    except PermissionError:
        pytest.skip(
            "needs root on the engine's host to crash a container's PID 1 "
            "(Docker Desktop keeps it in its VM)"
        )
    start = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    back: dict[str, float] = {}

    def all_back() -> bool:
        for s in services:
            if s.name in back:
                continue
            if s.restart_count > before[s.name] and s.health() == "healthy":
                back[s.name] = time.monotonic() - start
        return len(back) == len(services)

    wait_for(all_back, timeout=limit, interval=1, what="every killed service healthy again")
    worst = max(back, key=back.get)
    sla.samples("SLA-R2", back, unit="s", how="per service: SIGKILL to healthy again")
    sla.check(
        "SLA-R2",
        back[worst],
        how=f"{len(services)} services SIGKILLed at once, restarted by their restart "
        "policy; seconds to healthy: " + ", ".join(f"{n} {t:.0f}" for n, t in sorted(back.items())),
    )
