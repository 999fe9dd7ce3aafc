"""The stack on an already-running older Docker engine (issue 12): Debian 12's own docker.io
(Engine 20.10, no health-check start_interval) in a privileged container beside the host's
engine. Without stack/compose.legacy-engine.yml Compose refuses the stack; with it (as setup adds
it on engines before 25) a cold `up --wait` gets every service healthy, only slower, and
`pytest -m infra` passes against it. `python -m stackcheck.ops.legacy_engine check` does the work
(bounded, tears everything down); this test runs it and checks its figures.

Opt-in: it takes minutes (the images are copied into the inner engine) and needs root and a
privileged container. It never touches the host's stacks: its own engine, project
`stackcheck-legacy`, published ports only inside that engine's network namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stackcheck.ops.legacy_engine import ENGINE_MIN_MAJOR, OVERRIDE, engine_major

ROOT = Path(__file__).resolve().parents[2]
ENV = "STACKCHECK_LEGACY_ENGINE"

pytestmark = [
    pytest.mark.perf,  # measures a cold start
    pytest.mark.alone,  # copies GBs of images and starts a second stack: nothing else beside it
    pytest.mark.reads,  # the suite's own stack is only read (its images); all else is its own
    pytest.mark.skipif(
        os.environ.get(ENV) != "1",
        reason=f"set {ENV}=1 to prove the stack on Docker Engine 20.10 (Debian 12's docker.io "
        "in a privileged container): Compose's start_interval error without "
        f"{OVERRIDE}, a cold up --wait with it, pytest -m infra there (~10 min, root)",
    ),
]


@pytest.mark.req("H6", "SLA-R3", "H1")
def test_stack_runs_on_an_engine_before_25_with_the_legacy_override(sla, tmp_path):
    out = tmp_path / "result.json"
    argv = [
        sys.executable, "-m", "stackcheck.ops.legacy_engine", "check", "--root", str(ROOT),
        "--timeout", "2400", "--json", str(out), "--reports", str(tmp_path / "reports"),
    ]  # fmt: skip
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=3600,  # the check's own budget plus its teardown
        cwd=ROOT,
    )
    if proc.returncode == 2 and "privileged" in proc.stderr:
        pytest.skip(f"this engine cannot run a nested engine: {proc.stderr[-300:]}")
    assert out.is_file(), f"the check did not finish:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    r = json.loads(out.read_text(encoding="utf-8"))
    report = proc.stdout[-3000:]
    assert (engine_major(r["engine_version"]) or 99) < ENGINE_MIN_MAJOR, report
    assert "start_interval" in r["error_without_override"], report
    assert r["cold_up_ok"] and r["all_healthy"], report
    unhealthy = [s["service"] for s in r["services"] if s["status"] != "healthy"]
    assert not unhealthy, report
    assert r["infra"], f"pytest -m infra did not run there: {r['notes']}"
    assert r["infra"]["failed"] == 0 and r["infra"]["errors"] == 0, report
    sla.check(
        "SLA-R3",
        r["cold_up_s"],
        how=f"Docker Engine {r['engine_version']} (Debian 12 docker.io, in a container) with "
        f"{OVERRIDE}: cold `up --wait` of {len(r['services'])} services, new containers and "
        "empty volumes; health checks first run after their 30 s interval",
    )
    sla.record(
        "H1",
        f"{len(r['services'])} health checks healthy on Engine {r['engine_version']} without "
        "start_interval",
        how=f"slowest {max((s['healthy_after'] or 0) for s in r['services']):.0f} s from "
        f"container start; pytest -m infra there: {r['infra']['passed']} passed, "
        f"{r['infra']['skipped']} skipped",
    )
