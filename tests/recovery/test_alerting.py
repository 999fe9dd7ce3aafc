"""M3 live: stop a service and its alert arrives as a mail in the stack's mail server, measured
end to end (stop -> Prometheus rule -> Alertmanager -> SMTP -> POP3)."""

from __future__ import annotations

import poplib
import time

import pytest
import yaml

from stackcheck.mode import Mode
from stackcheck.policy import seconds
from stackcheck.waits import wait_for

pytestmark = [
    pytest.mark.recovery,
    pytest.mark.needs("prometheus", "alertmanager", "mailpit", "postgres-exporter"),
]

VICTIM = "postgres-exporter"  # stopping it disturbs no other service


class Mailbox:
    def __init__(self, stack):
        self.port = stack.service("mailpit").port(1110)
        self.password = stack.secret("praxis_pop3_password", service="praxis-mailer")

    def _conn(self) -> poplib.POP3:
        conn = poplib.POP3(self.port.host, self.port.port, timeout=15)
        conn.user("praxis")
        conn.pass_(self.password)
        return conn

    def uidls(self) -> dict[str, int]:
        conn = self._conn()
        try:
            return {
                uid.decode(): int(num)
                for num, uid in (line.split(b" ", 1) for line in conn.uidl()[1])
            }
        finally:
            conn.quit()

    def new_texts(self, seen: set[str]) -> list[str]:
        conn = self._conn()
        try:
            out = []
            for line in conn.uidl()[1]:
                num, uid = line.split(b" ", 1)
                if uid.decode() not in seen:
                    out.append(b"\n".join(conn.top(int(num), 40)[1]).decode("utf-8", "replace"))
            return out
        finally:
            conn.quit()


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
    if stack.config.mode is Mode.EXTERNAL:
        pytest.skip("--stack=external: no service of a stack this suite does not own is stopped")
    hold, interval = rule_timing(stack)
    # The alert needs: discovery to drop the target (refresh 15 s), the next scrape to mark `up`
    # stale (one interval), an evaluation to see absent() (one interval), the rule's `for`, the
    # evaluation that fires it (one interval), the critical route's group_wait (10 s), SMTP, and
    # the 5 s POP3 poll here; 15 s of slack for a busy 2-core machine.
    bound = hold + 3 * interval + 15 + 10 + 5 + 15
    box = Mailbox(stack)
    seen = set(box.uidls())
    svc = stack.service(VICTIM)
    svc.stop(timeout=10)
    stopped = time.monotonic()
    try:
        texts, _ = wait_for(
            lambda: [t for t in box.new_texts(seen) if "ServiceTargetMissing" in t and VICTIM in t],
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
