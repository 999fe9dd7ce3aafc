"""Engines before 25 refuse health-check start_interval: setup adds compose.legacy-engine.yml,
which must drop it from every health check and change nothing else (issue 12)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from stackcheck.compose import Compose

pytestmark = pytest.mark.unit

STACK = Path(__file__).resolve().parents[3] / "stack"


def render(*files: str) -> dict:
    if not shutil.which("docker"):
        pytest.skip("needs the docker CLI with Compose v2 to render the files")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    compose = Compose(
        "stackcheck-legacy-render", STACK, files=files, env={**env, "COMPOSE_FILE": ""}
    )
    return compose.config(profiles=["*"])


def test_the_override_names_every_service_with_a_health_check():
    canonical = yaml.safe_load((STACK / "compose.yml").read_text(encoding="utf-8"))
    text = (STACK / "compose.legacy-engine.yml").read_text(encoding="utf-8")
    legacy = yaml.safe_load(text.replace("!reset ", ""))  # Compose's own YAML tag
    checked = {n for n, s in canonical["services"].items() if "healthcheck" in s}
    assert set(legacy["services"]) == checked


@pytest.mark.parametrize("offline", [False, True])
def test_start_interval_is_dropped_and_nothing_else(offline):
    base = ("compose.yml", "compose.offline.yml") if offline else ("compose.yml",)
    new = render(*base)["services"]
    old = render(*base, "compose.legacy-engine.yml")["services"]
    assert any("start_interval" in s.get("healthcheck", {}) for s in new.values())
    for name, svc in new.items():
        hc = dict(svc.get("healthcheck", {}))
        hc.pop("start_interval", None)
        assert "start_interval" not in old[name].get("healthcheck", {}), name
        assert old[name].get("healthcheck", {}) == hc, name
        assert {k: v for k, v in old[name].items() if k != "healthcheck"} == {
            k: v for k, v in svc.items() if k != "healthcheck"
        }, name
