"""External mode is hands-off (issue 13): the whole acceptance suite, pointed at a running stack
it does not own (`--stack=external`), runs only the tests declared `reads`; the stack does not
notice. Checked on this suite's own stack with mail in its mailbox and a pager (Alertmanager's
mail receiver) configured: no mail arrives but the pager's own, no alert is posted, no row
changes, no container is created and none of the stack's is started, stopped or killed. (The
stack's own alert rules may fire meanwhile: that is the stack, not the run.)
"""

from __future__ import annotations

import email
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import docker
import pytest

from stackcheck.mailflow import PROFILES, header_text
from stackcheck.waits import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.writes,  # sends the canary mail; the run it starts must not run in itself
    pytest.mark.alone,  # checks the stack is unchanged: no other test may change it meanwhile
    pytest.mark.whole_stack,  # every container's lifecycle events
    pytest.mark.needs("mailpit", "postgres", "alertmanager", "praxis-mailer", "ecom-mailer"),
]

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLE = {"create", "start", "restart", "stop", "kill", "die", "destroy", "pause", "update"}


def _notifications(stack) -> float:
    return stack.service("alertmanager").notifications_total()


def _posted_alerts(stack, *, lasting_until: float = 0.0) -> frozenset[str]:
    """Alerts not raised by Prometheus' rules (no generatorURL): what a client such as the
    suite's amtool posted. The stack's own rules may fire or resolve during the run: not ours.
    With `lasting_until` (epoch seconds), only those still meant to be active then: an alert
    posted earlier that expires by its own end time during the run is not the run's doing."""
    return frozenset(
        json.dumps(a["labels"], sort_keys=True)
        for a in stack.service("alertmanager").alerts()
        if not a.get("generatorURL") and _ends_at(a) > lasting_until
    )


def _posted_alert_ends(stack) -> dict[str, float]:
    """The posted alerts (as _posted_alerts) with the time each is meant to end."""
    return {
        json.dumps(a["labels"], sort_keys=True): _ends_at(a)
        for a in stack.service("alertmanager").alerts()
        if not a.get("generatorURL")
    }


def _ends_at(alert: dict) -> float:
    try:
        return datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return float("inf")


def snapshot(stack, dbs) -> dict:
    counts = {
        (p, t): dbs[p].query(f"SELECT count(*) FROM {t}")[0][0]
        for p in dbs
        for t in ("emails", "duplicates", "attachments", "outbox")
    }
    containers = {}
    for svc in stack.services():
        containers[svc.name] = (svc.container.id, svc.started_at, svc.restart_count)
    return {
        "alerts posted": _posted_alerts(stack),
        "rows": counts,
        "containers": containers,
    }


@pytest.mark.req("SC1")
def test_external_mode_leaves_a_running_stack_untouched(stack, mail, praxis_db, ecom_db, tmp_path):
    dbs = {"praxis": praxis_db, "ecom": ecom_db}
    # mail in the mailbox, as a production stack has
    sent = mail.mail(PROFILES["ecom"], "canary before an external run", "left where it is")
    ecom_db.wait_stored(sent, timeout=60)
    wait_for(  # its acknowledgement and staff notice are part of "before"
        lambda: ecom_db.query("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')")[
            0
        ][0],
        timeout=120,
        interval=0.5,
        ok=lambda n: n == 0,
        what="the canary's replies sent",
    )
    reader = stack.service("mailpit").reader()
    mailbox = reader.uids()
    paged = _notifications(stack)  # reported: the stack's own rules may page meanwhile
    before = snapshot(stack, dbs)
    alerts_before = _posted_alert_ends(stack)
    since = time.time()
    env = {
        **os.environ,
        "STACKCHECK_STACK": "external",
        "STACKCHECK_PROJECT": stack.config.project,
    }
    env.pop("STACKCHECK_TEARDOWN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/infra", "tests/security", "tests/e2e",
         "tests/perf", "tests/recovery", "-q", "-rs", "-p", "no:cacheprovider",
         "-p", "no:randomly", f"--evidence-dir={tmp_path / 'evidence'}",
         f"--html={tmp_path / 'report.html'}", f"--junitxml={tmp_path / 'junit.xml'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    until = time.time()
    tail = proc.stdout[-4000:]
    assert proc.returncode in (0, 1), tail  # 1: a read-only check may fail; the point is below
    summary = re.search(r"(\d+) passed", proc.stdout)
    assert summary and int(summary.group(1)) > 50, tail
    assert "writes test data into a stack that is not ours" in proc.stdout, tail
    assert "disrupts the stack: never in external mode" in proc.stdout, tail
    after = snapshot(stack, dbs)
    # an alert posted before the run (the delivery probe of test_monitoring ends after 2 min)
    # that expired by its own end time meanwhile is not a change the run made
    before["alerts posted"] = frozenset(
        labels for labels, ends in alerts_before.items() if ends > until
    ) | (before["alerts posted"] - alerts_before.keys())
    # new mail: only the pager's own (the stack's rules may fire meanwhile), none from the run
    new_mail = {
        uid: header_text(email.message_from_bytes(top).get("To", ""))
        for uid, top in reader.tops(skip=mailbox).items()
    }
    foreign = {uid: to for uid, to in new_mail.items() if "alerts@example.com" not in to}
    assert not foreign, f"mail arrived during the external run: {foreign}"
    print(f"pager: {_notifications(stack) - paged:g} notifications of the stack's own rules")
    # any container created on the stack (a probe on its networks or in its project, a
    # throwaway job), or any lifecycle event of the stack's own; containers of other projects or
    # sessions on the same engine (a build, another clone's suite) are not the stack's business
    events = _touching_events(stack, since, until)
    assert events == [], f"container lifecycle events during the external run: {events[:20]}"
    for key in before:
        assert after[key] == before[key], f"{key} changed: {before[key]} -> {after[key]}"


def _touching_events(stack, since: float, until: float) -> list[tuple[str, str]]:
    """(container name, action) of every container event in the window that touched this
    stack: created in its project, joined to one of its networks, or sharing the network
    namespace of one of its containers; or a lifecycle event of one of its own containers."""
    project = stack.config.project
    window = {"since": int(since), "until": int(until) + 1, "decode": True}
    joined = {
        e["Actor"]["Attributes"].get("container")
        for e in stack.docker.events(filters={"type": "network", "event": "connect"}, **window)
        if e["Actor"]["Attributes"].get("name", "").startswith(f"{project}_")
    }
    ours = {
        c.id
        for c in stack.docker.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project}"}
        )
    }

    def shares_our_netns(cid: str) -> bool:
        try:
            mode = stack.docker.api.inspect_container(cid)["HostConfig"]["NetworkMode"]
        except docker.errors.NotFound:
            return False  # removed already (--rm): attributed by its network events, if any
        return mode.startswith("container:") and mode.split(":", 1)[1] in ours

    found = []
    for e in stack.docker.events(filters={"type": "container"}, **window):
        attrs, action, cid = (
            e.get("Actor", {}).get("Attributes", {}),
            e.get("Action", ""),
            e.get("id", ""),
        )
        in_project = attrs.get("com.docker.compose.project") == project
        if (action == "create" and (in_project or cid in joined or shares_our_netns(cid))) or (
            action.split(":")[0] in LIFECYCLE and in_project
        ):
            found.append((attrs.get("name"), action))
    return found
