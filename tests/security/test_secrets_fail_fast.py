"""S6: a service started without its secret stops at once with a message naming what is
missing (and never prints a secret value). Each service runs from its real image with its real
configuration from the merged compose file, only the secret file is left out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.security


def run_without_secrets(stack, svc: dict, timeout: float) -> tuple[int | None, str, float]:
    """The service's image run once as the merged compose file configures it (user, read-only
    root, tmpfs, configuration binds, environment, entrypoint and command) on no network, with
    an empty tmpfs for each data volume and no secret; None for a run still going at the end."""
    create: dict = {"network_mode": "none", "tmpfs": {}, "volumes": []}
    if svc.get("user"):
        create["user"] = str(svc["user"])
    if svc.get("read_only"):
        create["read_only"] = True
    for t in svc.get("tmpfs") or []:
        path, _, options = t.partition(":")
        create["tmpfs"][path] = options
    for v in svc.get("volumes") or []:
        if v["type"] == "bind":  # configuration files stay; secrets are not binds here
            create["volumes"].append(f"{v['source']}:{v['target']}:ro")
        elif v["type"] == "volume":  # a fresh, empty data directory
            create["tmpfs"][v["target"]] = ""
    create["environment"] = {k: val for k, val in (svc.get("environment") or {}).items()}
    if svc.get("entrypoint"):  # as `--entrypoint E IMAGE ARGS...`: no image CMD
        create["entrypoint"] = svc["entrypoint"]
    start = time.monotonic()
    ran = stack.engine.run(svc["image"], svc.get("command") or None, timeout=timeout, **create)
    return ran.exit_code, ran.output, time.monotonic() - start


@pytest.mark.req("S6")
@pytest.mark.parametrize("service", ["postgres", "redis", "mailpit", "praxis-mailer"])
def test_missing_secret_fails_fast_with_a_clear_message(stack, service, sla):
    if not stack.has(service):
        pytest.skip(f"needs service {service}, which this stack does not run")
    cfg = stack.compose.config()["services"][service]
    secrets = [s["target"] for s in cfg.get("secrets") or []]
    assert secrets, f"{service} declares no secrets"
    code, out, took = run_without_secrets(stack, cfg, timeout=30)
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
