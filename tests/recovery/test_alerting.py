"""M3 live: stop a service and its alert arrives as a mail in the stack's mail server, measured
end to end (stop -> Prometheus rule -> Alertmanager -> SMTP -> POP3)."""

from __future__ import annotations

import time

import pytest
import yaml

from stackcheck.policy import seconds
from stackcheck.services.mailserver import Pop3Reader
from stackcheck.waits import wait_for

pytestmark = [
    pytest.mark.recovery,
    pytest.mark.needs("prometheus", "alertmanager", "mailpit", "postgres-exporter"),
]

VICTIM = "postgres-exporter"  # stopping it disturbs no other service


def new_texts(box: Pop3Reader, seen: set[str]) -> list[str]:
    """Headers and the first 40 body lines of every message not in `seen`, as text."""
    return [t.decode("utf-8", "replace") for t in box.tops(body_lines=40, skip=seen).values()]


def rule_timing(stack) -> tuple[float, float]:
    """(the ServiceTargetMissing rule's `for`, the evaluation interval) from the mounted config."""
    cfg = stack.config.stack_dir / "config" / "prometheus"
    interval = seconds(
        yaml.safe_load((cfg / "prometheus.yml").read_text())["global"]["evaluation_interval"]
    )
    rules = yaml.safe_load((cfg / "rules" / "services.yml").read_text())
    rule = next(
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "ServiceTargetMissing"
    )
    return seconds(rule["for"]), interval


@pytest.mark.req("M3")
def test_stopped_service_alert_arrives_by_mail(stack, sla):
    hold, interval = rule_timing(stack)
    # The alert needs: discovery to drop the target (refresh 15 s), the next scrape to mark `up`
    # stale (one interval), an evaluation to see absent() (one interval), the rule's `for`, the
    # evaluation that fires it (one interval), the critical route's group_wait (10 s), SMTP, and
    # the 5 s POP3 poll here; 15 s of slack for a busy 2-core machine.
    bound = hold + 3 * interval + 15 + 10 + 5 + 15
    box = stack.service("mailpit").reader()
    seen = box.uids()
    svc = stack.service(VICTIM)
    svc.stop(timeout=10)
    stopped = time.monotonic()

    def alert_mails() -> list[str]:
        return [t for t in new_texts(box, seen) if "ServiceTargetMissing" in t and VICTIM in t]

    try:
        texts, _ = wait_for(
            alert_mails,
            timeout=bound + 60,
            interval=5,
            what=f"the alert mail for stopped {VICTIM}",
        )
        took = time.monotonic() - stopped
    finally:
        svc.start()
    svc.wait_healthy(timeout=120)
    sla.record(
        "M3",
        took,
        unit="s",
        how=f"{VICTIM} stopped -> ServiceTargetMissing (for {hold:g} s, evaluated every "
        f"{interval:g} s) -> Alertmanager -> mail read over POP3",
    )
    assert took <= bound, f"alert mail after {took:.0f} s, expected within {bound:g} s"
    assert texts
