"""Ollama: the real one where $OLLAMA_URL answers, else the suite's double (tests/doubles), run
in a throwaway container on the stack's backend network as `ollama`, where the mailers look
for it. The double is never part of an image or of the compose files."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import docker.errors
import httpx
from docker.models.containers import Container

from stackcheck.services.base import Engine, Service, port_bindings

PORT = 11434
DOUBLE_LABEL = "org.stackcheck.double"


class OllamaDouble:
    """The double's client: its Ollama API, plus knobs (`/_control`) and counters (`/_stats`)."""

    def __init__(self, url: str):
        self.url = url

    def answers(self) -> bool:
        return httpx.get(f"{self.url}/api/tags", timeout=2).status_code == 200

    def control(self, **knobs) -> None:
        httpx.post(f"{self.url}/_control", json=knobs, timeout=5).raise_for_status()

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_stats", timeout=5).json()


class Ollama(Service):
    """A stack that runs Ollama as a service: its API on the published port."""

    def client(self) -> httpx.Client:
        return self.http(PORT)


def double_name(engine: Engine) -> str:
    return f"{engine.project}-ollama-double"


def start_double(engine: Engine, *, image: str, doubles_dir: Path) -> Container:
    """Run the double, replacing a left-over one: created on the frontend network, which can
    publish the control port to loopback, then joined to the internal backend network as
    `ollama`. Hardened as the stack's services are (read-only, no capabilities, nobody)."""
    engine.guard("start the Ollama double")
    remove_double(engine)
    container = engine.docker.containers.run(
        image,
        ["/double/ollama_double.py"],
        entrypoint=["python3"],
        name=double_name(engine),
        detach=True,
        network=f"{engine.project}_frontend",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        user="65534:65534",
        labels={DOUBLE_LABEL: "ollama"},
        volumes={str(doubles_dir): {"bind": "/double", "mode": "ro"}},
        ports={f"{PORT}/tcp": ("127.0.0.1", None)},
    )
    engine.docker.networks.get(f"{engine.project}_backend").connect(container, aliases=["ollama"])
    return container


def remove_double(engine: Engine) -> None:
    """Remove the double (`docker rm -f`); nothing to do when it is not there."""
    with suppress(docker.errors.NotFound):
        engine.docker.containers.get(double_name(engine)).remove(force=True)


def double_client(engine: Engine) -> OllamaDouble:
    """The running double's client, on its loopback port."""
    container = engine.docker.containers.get(double_name(engine))
    bound = port_bindings(container.attrs["NetworkSettings"]["Ports"]).get(f"{PORT}/tcp")
    if not bound:
        raise AssertionError(f"{container.name} publishes no port for {PORT}/tcp")
    return OllamaDouble(f"http://{bound[0].host}:{bound[0].port}")
