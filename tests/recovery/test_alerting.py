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
    """Headers and the first 40 body lines of every message not in `seen`, as text; each is
    read once (added to `seen`), so a poll beside a mail flood reads only what is new."""
    tops = box.tops(body_lines=40, skip=seen)
    seen.update(tops)
    return [t.decode("utf-8", "replace") for t in tops.values()]


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
@pytest.mark.disrupts(VICTIM)
# waits ~3 minutes on the rule's `for:`: under -n N beside the alone tests that leave the
# exporter, Prometheus, Alertmanager and the mail server alone (stackcheck.parallel)
@pytest.mark.background(observes=("prometheus", "alertmanager", "mailpit"))
def test_stopped_service_alert_arrives_by_mail(request, stack, sla):
    hold, interval = rule_timing(stack)
    # The alert needs: discovery to drop the target (refresh 15 s), the next scrape to mark `up`
    # stale (one interval), an evaluation to see absent() (one interval), the rule's `for`, the
    # evaluation that fires it (one interval), the critical route's group_wait (10 s), SMTP, and
    # the 5 s POP3 poll here; 15 s of slack for a busy 2-core machine.
    bound = hold + 3 * interval + 15 + 10 + 5 + 15
    box = stack.service("mailpit").reader()
    seen = box.uids()
    svc = stack.service(VICTIM)
    with stack.holding(VICTIM, by=request.node.nodeid):
        took, texts = _alert_after_stop(svc, box, seen, bound)
    sla.record(
        "M3",
        took,
        unit="s",
        how=f"{VICTIM} stopped -> ServiceTargetMissing (for {hold:g} s, evaluated every "
        f"{interval:g} s) -> Alertmanager -> mail read over POP3",
    )
    assert took <= bound, f"alert mail after {took:.0f} s, expected within {bound:g} s"
    assert texts


def _alert_after_stop(svc, box: Pop3Reader, seen: set[str], bound: float) -> tuple[float, list]:
    """Stop the victim, wait for its alert mail, start it again and wait until it is healthy:
    (seconds from the stop to the mail, the alert mails)."""
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
    return took, texts
