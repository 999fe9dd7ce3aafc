"""Fixtures shared by the acceptance suites: SMTP submission, the mailers' databases, and the
Ollama double where no Ollama answers."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from stackcheck import parallel
from stackcheck.mode import Mode
from stackcheck.services.mailserver import MailClient
from stackcheck.services.ollama import OllamaDouble, double_client, remove_double, start_double
from stackcheck.services.postgres import ProfileDB
from stackcheck.stack import docker_client as docker_client_for_this_host
from stackcheck.waits import wait_for

ROOT = Path(__file__).resolve().parents[1]
MAILER_IMAGE = "stackcheck/mailer:0.1.0"


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """The Docker API for a test that runs throwaway containers without the stack (the stack's
    own handles reach Docker through `stack.engine`, on the same kind of client)."""
    try:
        client = docker_client_for_this_host()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"needs a Docker engine; none answers ({exc}): run `./run setup`")
    return client


@pytest.fixture(scope="session")
def mail(stack) -> MailClient:
    """Submission as to any provider: STARTTLS verified against the stack's CA, then AUTH
    (issue 11). Fails here, naming the service, when mailpit publishes no SMTP port."""
    return stack.service("mailpit").submitter("praxis")


@pytest.fixture(scope="session")
def praxis_db(stack) -> ProfileDB:
    return stack.service("postgres").profile("praxis")


@pytest.fixture(scope="session")
def ecom_db(stack) -> ProfileDB:
    return stack.service("postgres").profile("ecom")


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
    engine = stack.engine

    def start() -> None:
        start_double(engine, image=MAILER_IMAGE, doubles_dir=ROOT / "tests" / "doubles")

    # under `pytest -n N` the workers share one double: the first starts it, the last removes it
    parallel.share(request.config, "ollama-double", start=start)
    double: OllamaDouble = double_client(engine)
    wait_for(double.answers, timeout=30, what="the Ollama double to answer")
    yield double
    parallel.unshare(request.config, "ollama-double", stop=lambda: remove_double(engine))
