"""Recovery in Swarm terms (issue 15): a task killed is replaced by a new task, healthy within
SLA-R1; a mailer task killed in the middle of a burst loses and duplicates nothing. Needs the
stack `./run deploy swarm` deployed and --stack=swarm (stackcheck.swarm_plugin skips these
elsewhere, naming that); each test leaves every service healthy again."""

from __future__ import annotations

import os
import signal
import time

import pytest

from stackcheck.mailflow import PROFILES
from stackcheck.waits import wait_for

pytestmark = [pytest.mark.swarm, pytest.mark.recovery, pytest.mark.disrupts]


def crash(svc) -> str:
    """SIGKILL the task's main process from the host, as a crash would; return the task's
    container id (Swarm replaces the task by a new one, in a new container)."""
    old = svc.container.id
    os.kill(svc.pid, signal.SIGKILL)
    return old


def replaced_and_healthy(svc, old_id: str, timeout: float) -> float:
    """Seconds until a container other than `old_id` runs the service and is healthy."""
    start = time.monotonic()

    def ok() -> bool:
        c = svc.container
        return c.id != old_id and c.status == "running" and svc.health() == "healthy"

    wait_for(ok, timeout=timeout, interval=0.5, what=f"{svc.name}: a new task healthy")
    return time.monotonic() - start


@pytest.mark.req("SLA-R1", "H3")
def test_every_killed_task_is_rescheduled_and_healthy_within_sla(stack, sla):
    """One service at a time (the others keep serving): its task's PID 1 SIGKILLed, Swarm's
    restart policy starts a new task, which must be healthy within SLA-R1."""
    limit = sla.threshold("SLA-R1").value
    times: dict[str, float] = {}
    slow = []
    for name in stack.defined:
        svc = stack.service(name)
        svc.wait_healthy(timeout=limit)  # the previous kill may still echo (a dependency)
        old = crash(svc)
        times[name] = replaced_and_healthy(svc, old, timeout=limit + 60)
        if times[name] > limit:
            slow.append(name)
    sla.samples("SLA-R1", times, unit="s", how="Swarm: a task SIGKILLed until its new task healthy")
    worst = max(times, key=times.get)
    sla.check(
        "SLA-R1",
        times[worst],
        how=f"Swarm, {len(times)} services one at a time: task SIGKILLed until the new task "
        f"is healthy; slowest {worst} {times[worst]:.1f} s",
    )
    assert not slow, {n: round(times[n], 1) for n in slow}


def _burst(mail, n: int, tag: str):
    msgs = [
        mail.build(
            PROFILES["ecom"], f"{tag} {i}", f"{tag} {i}", sender=f"{tag.lower()}{i}@example.org"
        )
        for i in range(n)
    ]
    return [mail.send(m) for m in msgs]


def _counts(db, sent) -> dict[str, int]:
    rows = db.query(
        "SELECT message_id, count(*) FROM emails WHERE message_id = ANY(%s) GROUP BY message_id",
        ([s.message_id for s in sent],),
    )
    return dict(rows)


@pytest.mark.req("E4", "SLA-R2")
def test_mailer_task_killed_mid_burst_loses_and_duplicates_nothing(
    stack, mail, ecom_db, ollama, sla
):
    if ollama is None:
        pytest.skip("needs the Ollama double to pace the burst; a real Ollama is configured")
    svc = stack.service("ecom-mailer")
    ollama.control(delay_s=0.3)  # a 30-mail burst takes ~10 s: the kill lands in the middle
    try:
        sent = _burst(mail, 30, "SwarmCrash")
        wait_for(
            lambda: len(_counts(ecom_db, sent)),
            timeout=60,
            interval=0.2,
            ok=lambda n: n >= 3,
            what="the first mails of the burst stored",
        )
        old = crash(svc)
        at_crash = len(_counts(ecom_db, sent))
        assert at_crash < len(sent), "the burst was done before the crash: no fault exercised"
        back = replaced_and_healthy(svc, old, timeout=sla.threshold("SLA-R2").value)
        counts, took = wait_for(
            lambda: _counts(ecom_db, sent),
            timeout=180,
            interval=0.5,
            ok=lambda c: len(c) == len(sent),
            what="all 30 mails stored",
        )
    finally:
        ollama.control(delay_s=0)
    assert all(n == 1 for n in counts.values()), {k: v for k, v in counts.items() if v != 1}
    sla.record(
        "SLA-R2",
        back,
        unit="s",
        how="Swarm: ecom-mailer task SIGKILLed mid-burst until its new task healthy",
    )
    sla.record(
        "E4",
        took,
        unit="s",
        how=f"Swarm: 30-mail burst, ecom-mailer task SIGKILLed with {at_crash} stored; all 30 "
        "stored, each once",
    )
