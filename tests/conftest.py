"""Fixtures shared by the acceptance suites: SMTP submission, the mailers' databases, and the
Ollama double where no Ollama answers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from stackcheck import parallel
from stackcheck.mailflow import MailClient, OllamaDouble, ProfileDB, mail_login, mail_tls
from stackcheck.mode import Mode
from stackcheck.waits import wait_for

ROOT = Path(__file__).resolve().parents[1]
MAILER_IMAGE = "stackcheck/mailer:0.1.0"


@pytest.fixture(scope="session")
def mail(stack) -> MailClient:
    def locate() -> tuple[str, int]:
        port = stack.service("mailpit").port(1025)
        return port.host, port.port

    locate()  # fails here, naming the service, when mailpit publishes no SMTP port
    # as to any provider: STARTTLS verified against the stack's CA, then AUTH (issue 11)
    return MailClient(locate, tls=mail_tls(stack), login=lambda: mail_login(stack, "praxis"))


@pytest.fixture(scope="session")
def praxis_db(stack) -> ProfileDB:
    return ProfileDB(stack, "praxis")


@pytest.fixture(scope="session")
def ecom_db(stack) -> ProfileDB:
    return ProfileDB(stack, "ecom")


@pytest.fixture(scope="session")
def ollama(stack, request):
    """The real Ollama when $OLLAMA_URL answers (the mailers must be configured for it), else
    the double from tests/doubles, run on the stack's backend network as `ollama`."""
    real = os.environ.get("OLLAMA_URL")
    if real:
        try:
            httpx.get(f"{real.rstrip('/')}/api/tags", timeout=5).raise_for_status()
            yield None
            return
        except httpx.HTTPError:
            pass
    if stack.config.mode is Mode.EXTERNAL:
        pytest.skip(
            "needs service ollama: none answers at $OLLAMA_URL, and the double is not "
            "started inside an external stack"
        )
    name = f"{stack.config.project}-ollama-double"

    def start() -> None:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        # Created on the frontend network, which can publish the control port to loopback, then
        # joined to the internal backend network as `ollama`, where the mailers look for it.
        # fmt: off
        subprocess.run(
            ["docker", "run", "--detach", "--name", name,
             "--network", f"{stack.config.project}_frontend",
             "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
             "--user", "65534:65534", "--label", "org.stackcheck.double=ollama",
             "--volume", f"{ROOT / 'tests' / 'doubles'}:/double:ro",
             "--publish", "127.0.0.1::11434",
             "--entrypoint", "python3", MAILER_IMAGE, "/double/ollama_double.py"],
            check=True, capture_output=True, text=True,
        )
        subprocess.run(
            ["docker", "network", "connect", "--alias", "ollama",
             f"{stack.config.project}_backend", name],
            check=True, capture_output=True, text=True,
        )
        # fmt: on

    def stop() -> None:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)

    # under `pytest -n N` the workers share one double: the first starts it, the last removes it
    parallel.share(request.config, "ollama-double", start=start)
    port = subprocess.run(
        ["docker", "port", name, "11434/tcp"], check=True, capture_output=True, text=True
    ).stdout.split()[0]
    double = OllamaDouble(f"http://{port}")
    wait_for(
        lambda: httpx.get(f"{double.url}/api/tags", timeout=2).status_code == 200,
        timeout=30,
        what="the Ollama double to answer",
    )
    yield double
    parallel.unshare(request.config, "ollama-double", stop=stop)
