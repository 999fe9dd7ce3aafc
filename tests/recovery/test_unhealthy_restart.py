"""SLA-H1: a service whose health check fails 3 times in a row is restarted, with no container
holding the Docker socket: every health check runs through stack/config/health/restart-after-3,
which stops PID 1 on the 3rd consecutive failure, and the restart policy starts it again."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from stackcheck.mailflow import PROFILES
from stackcheck.waits import wait_for

pytestmark = [pytest.mark.recovery, pytest.mark.needs("redis", "praxis-mailer", "ecom-mailer")]

WRAPPER = "/usr/local/lib/stackcheck/restart-after-3"
MAILERS = ("praxis-mailer", "ecom-mailer")  # both need redis: stopping it fails both checks
# images without a shell, or whose shell is not guaranteed: Docker only marks them unhealthy
NOT_WRAPPED = {
    "loki": "distroless image, no shell",
    "n8n": "the official 2.x image's base (DHI) is not known to ship /bin/sh",
    "minio": "optional, untested here (no offline image); its base is ubi-micro",
    "minio-init": "a one-shot job",
    "minio-volume-init": "a one-shot job (chowns the new volume, then exits)",
}


@pytest.mark.req("SLA-H1")
def test_every_health_check_is_wrapped(stack):
    cfg = stack.compose.config(profiles=["*"])
    unwrapped = [
        n
        for n, s in cfg["services"].items()
        if WRAPPER not in (s.get("healthcheck") or {}).get("test", []) and n not in NOT_WRAPPED
    ]
    assert not unwrapped, f"health checks that never restart their service: {unwrapped}"


def _started(stamp: str) -> datetime:
    """Docker's RFC 3339 time with nanoseconds, as an aware datetime (microseconds)."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    assert m, stamp
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}")


def next_probe_in(svc, now: datetime) -> float:
    """Seconds until Docker probes `svc` again: one interval after its last probe ended. A probe
    due now or overdue may have started while redis still answered: the one after it counts."""
    interval = svc.healthcheck["Interval"] / 1e9
    log = svc.health_log()
    if not log:
        return interval
    due = (_started(log[-1]["End"]) - now).total_seconds() + interval
    return due if due >= 0.5 else max(due, 0.0) + interval


def past_start_period(svc, now: datetime) -> float:
    """Seconds `svc` has been past its start period (negative: still inside it). Inside it a
    container is probed every second (start_interval) and neither Docker nor the wrapper counts
    failures."""
    age = (now - svc.started_at).total_seconds()
    return age - svc.healthcheck.get("StartPeriod", 0) / 1e9


def countable_probe_in(svc, now: datetime) -> float:
    """Seconds until Docker next probes `svc` past its start period: the wrapper counts only
    the failures of those (see stack/config/health/restart-after-3)."""
    interval = svc.healthcheck["Interval"] / 1e9
    due = next_probe_in(svc, now)
    while due < 1 - past_start_period(svc, now):
        due += interval
    return due


def first_countable_probe(stack) -> tuple[float, float] | None:
    """For the scheduler (`settled(due=...)`): in how many seconds the test below is best
    started, and the probe interval. Redis should stop just before a mailer is probed past its
    start period: each second before that is a second more of the three-check wait, with Redis
    down and nothing else able to run."""
    if stack is None:
        return None
    now = datetime.now(UTC)
    mailers = [stack.service(n) for n in MAILERS]
    first = min(mailers, key=lambda m: countable_probe_in(m, now))
    return max(0.0, countable_probe_in(first, now) - STOP_LEAD), first.healthcheck["Interval"] / 1e9


# s: the test's fixtures and `docker stop redis` take ~0.5 s, and a probe due in < 0.5 s may
# have begun while redis answered (the test then waits for the one after it)
STOP_LEAD = 1.5


@pytest.mark.req("SLA-H1", "SLA-R5")
@pytest.mark.disrupts("redis", "praxis-mailer", "ecom-mailer")  # both mailers need redis
@pytest.mark.needs("mailpit", "postgres")
# under `pytest -n N`: before the tests that restart the mailers, and while those that leave
# redis and the mailers alone run until a mailer's next countable probe is near
@pytest.mark.settled(due=first_countable_probe)
def test_three_failed_checks_restart_the_service(stack, sla, mail, praxis_db, ecom_db):
    """Redis stopped makes both mailers' readiness checks fail; the one probed next past its
    start period (an earlier test may have restarted one: failures in it are not counted) is
    watched: after 3 failed checks it restarts itself. Redis comes back and
    everything is healthy again. A mail to each profile sent during the outage is stored soon
    after Redis answers again (SLA-R5), by the mailer that restarted and by one that did not
    (its fetcher had backed off for up to a minute)."""
    redis = stack.service("redis")
    mailers = [stack.service(n) for n in MAILERS]
    restarts = {m.name: m.restart_count for m in mailers}
    failures: dict[str, str] = {}  # probe start -> output, failing probes seen before the restart
    redis.stop(timeout=10)
    stopped = time.monotonic()
    # the restart comes two intervals after the first failing probe past the start period: the
    # mailer Docker probes so next is watched (5 s sooner on average than a fixed choice)
    now = datetime.now(UTC)
    mailer = min(mailers, key=lambda m: countable_probe_in(m, now))
    interval = mailer.healthcheck["Interval"] / 1e9
    restarts = restarts[mailer.name]
    # probes before the stop, and those in the start period, are not counted
    start_period = timedelta(seconds=mailer.healthcheck.get("StartPeriod", 0) / 1e9)
    since = max(now - timedelta(seconds=1), mailer.started_at + start_period)
    waiting = {
        p: mail.mail(a, f"Sent while redis was down ({p})", "to be stored once it is back")
        for p, a in PROFILES.items()
    }
    try:

        def restarted() -> bool:
            if mailer.restart_count > restarts:
                return True
            for p in mailer.health_log():
                # the log also keeps probes of the start period (start_interval: every second)
                if p["ExitCode"] != 0 and _started(p["Start"]) >= since:
                    failures[p["Start"]] = p.get("Output", "")
            return False

        wait_for(
            restarted,
            timeout=4 * interval + 60,
            interval=1,
            what=f"{mailer.name} to restart itself after 3 failed checks",
        )
        took = time.monotonic() - stopped
    finally:
        redis.start()
        back = time.monotonic()
    dbs = {"praxis": praxis_db, "ecom": ecom_db}
    stored: dict[str, float] = {}

    def all_stored() -> bool:
        for p, sent in waiting.items():
            if p not in stored and dbs[p].rows(sent.message_id):
                stored[p] = time.monotonic() - back
        return len(stored) == len(waiting)

    bound = sla.threshold("SLA-R5").value
    wait_for(all_stored, timeout=bound + 90, interval=0.5, what="the mails sent during the outage")
    sla.check(
        "SLA-R5",
        max(stored.values()),
        how=f"redis down {back - stopped:.0f} s, a mail to each profile sent meanwhile; stored "
        + ", ".join(f"{p} {t:.1f} s" for p, t in sorted(stored.items()))
        + f" after `docker start redis` ({mailer.name} had restarted itself)",
    )
    redis.wait_healthy(timeout=120)
    wait_for(
        lambda: not stack.unhealthy(), timeout=300, interval=2, what="every service healthy again"
    )
    # the wrapper says why it stopped PID 1, into the container's log; the probe that did it
    # rarely gets its result recorded, as its container is stopping under it
    said = re.findall(r"health check failed (\d+) times in a row", mailer.logs(tail=2000))
    assert said, "no restart by the health check wrapper in the container's log"
    count = int(said[-1])
    assert len(failures) <= count, f"{len(failures)} failed checks recorded before the restart"
    assert took >= 2 * interval - 5, f"restarted after {took:.0f} s: before 3 checks could fail"
    sla.check(
        "SLA-H1",
        count,
        how=f"redis stopped; {mailer.name}'s check (every {interval:g} s) failed {count} "
        f"times in a row, then it restarted itself {took:.0f} s after the stop",
    )
