"""The review's ten one-line checks as an operator types them (docs/operator-checks.md): the first
`bash` block under each `### Tn` heading is run through `bash -c` in stack/, with the real tools of
the host (docker compose, curl, jq, awk, find), against the suite's stack, and must print PASS and
no FAIL. The document is the single source: change a line there and this test runs the new one.

The lines name the well-known host ports (9090, 3000, 8025); where setup gave random ones
(STACKCHECK_PORTS=random, CI), the port the engine published is put in before the line runs.
T8 (`docker compose down && ... up postgres`) runs on a throwaway compose project, never on the
shared stack; T5 needs the host's Ollama.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.reads]

DOC = Path(__file__).resolve().parents[2] / "docs" / "operator-checks.md"
_SECTION = re.compile(r"^### (T\d+): .*?^```bash\n(.+?)\n```", re.M | re.S)
# well-known host port in the document -> (service, container port)
ALONE_WHOLE_STACK = [pytest.mark.alone, pytest.mark.whole_stack]
WELL_KNOWN = {9090: ("prometheus", 9090), 3000: ("grafana", 3000), 8025: ("mailpit", 8025)}
NEEDS = {
    "T2": ("postgres",),
    "T3": ("postgres", "backup"),
    "T4": ("prometheus",),
    "T6": ("praxis-mailer",),
    "T7": ("mailpit",),
    "T8": ("postgres",),
}


def checks() -> dict[str, str]:
    found = {m[1]: m[2].strip() for m in _SECTION.finditer(DOC.read_text(encoding="utf-8"))}
    return found


@pytest.mark.req("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10")
def test_the_document_has_all_ten_checks():
    found = checks()
    assert sorted(found, key=lambda i: int(i[1:])) == [f"T{i}" for i in range(1, 11)], found
    assert all("\n" not in line for line in found.values()), "each check is one line"


def compose_env(stack, project: str | None = None) -> dict[str, str]:
    """The environment an operator's `docker compose` in stack/ gets from stack/.env, pointed at
    the suite's project (or a throwaway one)."""
    return {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project or stack.config.project,
        "COMPOSE_FILE": ":".join(stack.config.files),
    }


def with_ports(stack, line: str) -> str:
    for port, (service, target) in WELL_KNOWN.items():
        if f"localhost:{port}" in line and stack.has(service):
            published = stack.service(service).port(target).port
            line = line.replace(f"localhost:{port}", f"localhost:{published}")
    return line


def run_line(stack, line: str, project: str | None = None, timeout: float = 180):
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", "-c", line],
        cwd=stack.config.stack_dir,
        env=compose_env(stack, project),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, time.monotonic() - start


def assert_pass(check: str, line: str, proc) -> None:
    out = proc.stdout
    assert "PASS" in out and "FAIL" not in out, (
        f"{check}: `{line}` printed:\n{out[-2000:]}\nstderr:\n{proc.stderr[-1000:]}"
    )


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(
            f"T{i}",
            # T9 reads every container's CPU now: under -n N another worker's mail load would be
            # in it, so it runs with the tests that measure, alone
            marks=[pytest.mark.req(f"T{i}")] + (ALONE_WHOLE_STACK if i == 9 else []),
        )
        for i in (1, 2, 3, 4, 5, 6, 7, 9, 10)
    ],
)
def test_operator_check_passes_on_the_running_stack(stack, sla, check):
    for service in NEEDS.get(check, ()):
        if not stack.has(service):
            pytest.skip(f"needs service {service}, which this stack does not run")
    line = with_ports(stack, checks()[check])
    tools = {"T4": "curl", "T5": "curl", "T7": "jq"}
    if check in tools and not shutil.which(tools[check]):
        pytest.skip(f"{check} needs {tools[check]} on the host")
    if check == "T5":
        try:
            urllib.request.urlopen("http://localhost:11434/api/tags", timeout=3).close()
        except OSError as exc:
            pytest.skip(f"T5 needs the host's Ollama on localhost:11434 ({exc})")
    if check == "T10" and not os.access("/var/lib/docker", os.R_OK | os.X_OK):
        pytest.skip("T10 reads the engine's data root: run as root")
    proc, took = run_line(stack, line)
    assert_pass(check, line, proc)
    passes = proc.stdout.count("PASS")
    sla.record(
        check,
        f"operator's line: {passes} PASS, 0 FAIL",
        how=f"bash -c in stack/ ({took:.1f} s): {line}",
    )


@pytest.mark.req("T8")
@pytest.mark.writes  # starts a throwaway compose project on the same engine
def test_operator_check_t8_on_a_throwaway_project(stack, sla):
    """T8 stops the whole stack: its line runs as typed, but on a compose project of its own
    (same files and secrets, own volumes), after a first start that wrote a marker database; the
    marker must be listed after the line's down and up."""
    if not stack.has("postgres"):
        pytest.skip("needs service postgres, which this stack does not run")
    project = f"stackcheck-t8-{uuid.uuid4().hex[:8]}"
    marker = f"t8_{uuid.uuid4().hex[:8]}"
    line = checks()["T8"]
    try:
        first, _ = run_line(stack, "docker compose up -d --wait --no-build postgres", project)
        assert first.returncode == 0, first.stderr[-2000:]
        made, _ = run_line(
            stack,
            f"docker compose exec -T postgres sh -c "
            f'\'psql -U "$POSTGRES_USER" -c "CREATE DATABASE {marker}"\'',
            project,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        proc, took = run_line(stack, line, project)
        assert_pass("T8", line, proc)
        listed, _ = run_line(
            stack,
            'docker compose exec -T postgres sh -c \'psql -U "$POSTGRES_USER" -c "\\l"\'',
            project,
        )
        assert marker in listed.stdout, listed.stdout[-2000:]
    finally:
        subprocess.run(
            ["docker", "compose", "down", "-v", "--remove-orphans"],
            cwd=stack.config.stack_dir,
            env=compose_env(stack, project),
            capture_output=True,
            timeout=120,
        )
    sla.record(
        "T8",
        "operator's line: PASS; a marker database survived down/up",
        how=f"on throwaway project {project} ({took:.1f} s): {line}",
    )
