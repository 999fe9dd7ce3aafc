"""Availability over 30 days (SLA-AV1..AV3) from the recording rules of
stack/config/prometheus/rules/availability.yml, over the window Prometheus holds.

Each test states the window it saw. With less than 30 days the verdict is "provisional" with the
projection, or a failure once the month's downtime budget is already spent
(stackcheck.evidence.availability); it never claims a month it has not seen.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from stackcheck.evidence.availability import duration, judge
from stackcheck.evidence.recorder import FAIL
from stackcheck.services.prometheus import query

pytestmark = [pytest.mark.infra, pytest.mark.needs("prometheus"), pytest.mark.reads]

STEP_S = 15.0  # the rule group's interval: one sample per 15 s
RULES = "stack/config/prometheus/rules/availability.yml"


@pytest.fixture(scope="module")
def prom(stack) -> httpx.Client:
    with stack.service("prometheus").client() as client:
        groups = client.get("/api/v1/rules", params={"type": "record"}).json()["data"]["groups"]
        if not any(g["name"] == "availability" for g in groups):
            pytest.fail(
                f"Prometheus has not loaded the rule group 'availability' ({RULES}): it reads "
                "rules at start and on reload (`docker compose kill -s HUP prometheus` in stack/)",
                pytrace=False,
            )
        yield client


def by(prom: httpx.Client, expr: str, label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in query(prom, expr)}


def since(prom: httpx.Client, series: str, seen_s: float) -> str:
    """When the oldest sample of `series` Prometheus holds was recorded (1 min resolution; for
    a history shorter than that: now minus the time its samples cover)."""
    got = query(prom, f"min(min_over_time(timestamp({series})[30d:1m]))")
    if got:
        t = datetime.fromtimestamp(float(got[0]["value"][1]), UTC)
    else:
        t = datetime.fromtimestamp(datetime.now(UTC).timestamp() - seen_s, UTC)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def window(prom: httpx.Client, series: str) -> dict[str, tuple[float, float]]:
    """Per series (by `service`, or "" without that label): (available share, seconds seen)."""
    share = by(prom, f"avg_over_time({series}[30d])", "service")
    seen = by(prom, f"count_over_time({series}[30d])", "service")
    assert share, f"no samples of {series} yet: the rule has not been evaluated"
    return {k: (share[k], seen[k] * STEP_S) for k in share}


@pytest.mark.req("SLA-AV1")
def test_services_available_over_the_window(prom, sla):
    target = sla.threshold("SLA-AV1").value
    per = window(prom, "service:available:bool")
    judged = {s: judge(share, seen, target) for s, (share, seen) in per.items()}
    worst = min(per, key=lambda s: (per[s][0], -per[s][1]))
    j = judged[worst]
    who = f"worst service {worst}" if len({v[0] for v in per.values()}) > 1 else "every service"
    detail = ", ".join(
        f"{s} {100 * share:.2f} % / {duration(seen)}" for s, (share, seen) in sorted(per.items())
    )
    sla.record(
        "SLA-AV1",
        j.value,
        unit="%",
        verdict=j.verdict,
        how=f"{who}: {j.text}. avg_over_time(service:available:bool[30d]) per service (up; "
        f"pg_up; mailbox polls), history since "
        f"{since(prom, 'service:available:bool', per[worst][1])}; every service: {detail}. "
        "Redis, ClamAV and n8n export no metrics and are not in it",
    )
    failed = {s: x.text for s, x in judged.items() if x.verdict == FAIL}
    assert not failed, f"below {target} % for the month: {failed}"


@pytest.mark.req("SLA-AV2")
def test_database_available_over_the_window(prom, sla):
    target = sla.threshold("SLA-AV2").value
    ((share, seen),) = window(prom, "database:available:bool").values()
    j = judge(share, seen, target)
    sla.record(
        "SLA-AV2",
        j.value,
        unit="%",
        verdict=j.verdict,
        how=f"{j.text}. avg_over_time(database:available:bool[30d]) (postgres-exporter's pg_up; "
        "no exporter counts as down), history since "
        f"{since(prom, 'database:available:bool', seen)}",
    )
    assert j.verdict != FAIL, j.text


@pytest.mark.req("SLA-AV3")
def test_backups_successful_over_the_window(prom, sla):
    target = sla.threshold("SLA-AV3").value
    ((share, seen),) = window(prom, "backup:ok:bool").values()
    j = judge(share, seen, target)
    runs = by(prom, f"sum by (result) (increase(backup_runs_total[{int(seen) or 60}s]))", "result")
    counted = ", ".join(f"{n:.0f} {r}" for r, n in sorted(runs.items()) if n >= 0.5) or "none"
    sla.record(
        "SLA-AV3",
        j.value,
        unit="%",
        verdict=j.verdict,
        how=f"time with a good backup (last run succeeded, last success < 26 h old): {j.text}. "
        f"avg_over_time(backup:ok:bool[30d]), history since {since(prom, 'backup:ok:bool', seen)}; "
        f"runs counted in that window by result: {counted}",
    )
    assert j.verdict != FAIL, j.text
