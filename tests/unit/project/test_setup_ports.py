"""How `./run setup` picks the host ports it writes to stack/.env (host_settings in `run`): the
well-known port when it is free or already this project's, else empty (Docker picks a free one);
always empty with STACKCHECK_PORTS=random or where CI is set; a variable from the shell wins.
The functions are taken from `run` itself and run in bash with `docker` stubbed, on ports of this
machine that the test makes busy or free."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

RUN = Path(__file__).resolve().parents[3] / "run"


def _functions() -> str:
    text = RUN.read_text(encoding="utf-8")
    start = text.index("WELL_KNOWN_PORTS=")
    end = text.index("\n}\n", text.index("host_settings() {")) + 3
    return text[start:end]


def host_settings(ports: dict[str, int], *, env: dict[str, str], ours: int | None = None) -> dict:
    wanted = " ".join(f"{k}={v}" for k, v in ports.items())
    docker_ps = f"127.0.0.1:{ours}->9090/tcp" if ours else ""
    script = "\n".join(
        [
            _functions(),
            f'WELL_KNOWN_PORTS="{wanted}"',
            "project_name() { echo stackcheck-test; }",
            f'docker() {{ echo "{docker_ps}"; }}',
            "host_settings",
        ]
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"CI", "STACKCHECK_PORTS"}}
    venv = Path(sys.executable).parent.parent  # port_free runs "$VENV/bin/python"
    proc = subprocess.run(
        ["bash", "-c", script],
        env={**clean, "VENV": str(venv), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return dict(
        line.split("=", 1) for line in proc.stdout.splitlines() if re.match(r"^[A-Z_]+=", line)
    )


@pytest.fixture
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_well_known_when_free_else_empty(busy_port, free_port):
    got = host_settings({"A_HOST_PORT": free_port, "B_HOST_PORT": busy_port}, env={})
    assert got["A_HOST_PORT"] == str(free_port)
    assert got["B_HOST_PORT"] == ""  # taken by someone else: Docker picks a free port
    assert got["DOCKER_SOCKET_GID"].isdigit()


def test_a_port_this_project_already_publishes_is_kept(busy_port):
    got = host_settings({"B_HOST_PORT": busy_port}, env={}, ours=busy_port)
    assert got["B_HOST_PORT"] == str(busy_port)


@pytest.mark.parametrize("env", [{"STACKCHECK_PORTS": "random"}, {"CI": "true"}])
def test_random_for_ci_and_on_request(free_port, env):
    got = host_settings({"A_HOST_PORT": free_port}, env=env)
    assert got["A_HOST_PORT"] == ""


def test_a_port_set_in_the_shell_wins(busy_port):
    got = host_settings({"B_HOST_PORT": busy_port}, env={"B_HOST_PORT": "19999", "CI": "1"})
    assert got["B_HOST_PORT"] == "19999"


def test_the_stack_names_the_review_ports():
    text = _functions()
    for pair in (
        "PROMETHEUS_HOST_PORT=9090",
        "GRAFANA_HOST_PORT=3000",
        "MAILPIT_HTTP_HOST_PORT=8025",
        "MAILPIT_SMTP_HOST_PORT=1025",
    ):
        assert pair in text
