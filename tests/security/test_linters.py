"""Third-party linters on our files: compose-lint on the compose files (canonical, and the merged
offline view), hadolint on every Dockerfile. Zero findings; each suppression carries a reason in
stack/.compose-lint.yml or .hadolint.yaml."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from stackcheck.compose import Compose

pytestmark = [pytest.mark.security, pytest.mark.reads]

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stack"
DOCKERFILES = sorted(STACK.glob("images/*/Dockerfile"))


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(__file__).resolve().parents[2] / ".venv/bin" / name)
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed: run `./run setup` (it installs the dev extras)")
    return path


def _compose_lint(path: Path) -> dict:
    proc = subprocess.run(
        [
            _tool("compose-lint"),
            "check",
            "--no-env",
            "--format",
            "json",
            "--fail-on",
            "low",
            "--config",
            str(STACK / ".compose-lint.yml"),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip(), f"compose-lint printed nothing: {proc.stderr}"
    report = json.loads(proc.stdout)
    report["exit"] = proc.returncode
    return report


def _unsuppressed(report: dict) -> list[str]:
    return [
        f"{f['service']}: {f['rule_id']} {f['severity']}: {f['message']}"
        for f in report["findings"]
        if not f.get("suppressed")
    ]


@pytest.mark.req("S9", "S1", "S5")
def test_compose_lint_canonical(sla):
    report = _compose_lint(STACK / "compose.yml")
    found = _unsuppressed(report)
    suppressed = [f for f in report["findings"] if f.get("suppressed")]
    sla.record(
        "S9",
        f"compose-lint: {len(found)} findings, {len(suppressed)} suppressed with reason",
        how="compose-lint --fail-on low on stack/compose.yml",
    )
    assert not found and not report["errors"] and report["exit"] == 0, found or report["errors"]


@pytest.mark.req("S9", "S1", "S5")
def test_compose_lint_offline_merged(tmp_path):
    """The offline override is only meaningful merged: lint what Compose would run."""
    compose = Compose("stackcheck-lint", STACK, ("compose.yml", "compose.offline.yml"))
    proc = compose.run("config", timeout=60)
    merged = tmp_path / "compose.yml"
    merged.write_text(proc.stdout)
    report = _compose_lint(merged)
    found = _unsuppressed(report)
    assert not found and not report["errors"] and report["exit"] == 0, found or report["errors"]


@pytest.mark.req("S2")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint(dockerfile):
    proc = subprocess.run(
        [
            _tool("hadolint"),
            "--config",
            str(ROOT / ".hadolint.yaml"),
            "--no-color",
            str(dockerfile),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
