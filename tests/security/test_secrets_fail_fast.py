"""S6: a service started without its secret stops at once with a message naming what is
missing (and never prints a secret value). Each service runs from its real image with its real
configuration from the merged compose file, only the secret file is left out."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.security


def run_without_secrets(svc: dict, timeout: float) -> tuple[int | None, str, float]:
    args = ["docker", "run", "--rm", "--network", "none"]
    if svc.get("user"):
        args += ["--user", str(svc["user"])]
    if svc.get("read_only"):
        args.append("--read-only")
    for t in svc.get("tmpfs") or []:
        args += ["--tmpfs", t]
    for v in svc.get("volumes") or []:
        if v["type"] == "bind":  # configuration files stay; secrets are not binds here
            args += ["--volume", f"{v['source']}:{v['target']}:ro"]
        elif v["type"] == "volume":  # a fresh, empty data directory
            args += ["--tmpfs", v["target"]]
    for k, val in (svc.get("environment") or {}).items():
        args += ["--env", f"{k}={val}"]
    if svc.get("entrypoint"):
        args += ["--entrypoint", svc["entrypoint"][0]]
    args.append(svc["image"])
    if svc.get("entrypoint"):
        args += svc["entrypoint"][1:]
    args += svc.get("command") or []
    start = time.monotonic()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() + (exc.stderr or b"").decode()
        return None, out, time.monotonic() - start
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


@pytest.mark.req("S6")
@pytest.mark.parametrize("service", ["postgres", "redis", "mailpit", "praxis-mailer"])
def test_missing_secret_fails_fast_with_a_clear_message(stack, service, sla):
    if not stack.has(service):
        pytest.skip(f"needs service {service}, which this stack does not run")
    cfg = stack.compose.config()["services"][service]
    secrets = [s["target"] for s in cfg.get("secrets") or []]
    assert secrets, f"{service} declares no secrets"
    code, out, took = run_without_secrets(cfg, timeout=30)
    assert code not in (None, 0), f"{service} kept running without its secrets: {out[-1500:]}"
    named = [t for t in secrets if t in out or Path(t).name in out]
    env_named = [
        k for k, v in (cfg.get("environment") or {}).items() if k.endswith("_FILE") and k in out
    ]
    assert named or env_named, f"{service} exit {code} does not name the secret: {out[-1500:]}"
    for name in (s["source"] for s in cfg.get("secrets") or []):
        value = stack.secret(name, service=service)
        assert value not in out, f"{service} printed the value of {name}"
    sla.record(
        "S6",
        took,
        unit="s",
        how=f"{service} without its secret files: exit {code}, names {(named or env_named)[0]}",
    )
