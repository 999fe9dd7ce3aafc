"""The stack under test: lifecycle per mode, and the service handles (stackcheck.services), which
it makes on one Engine (the Docker client, the project, the mutation guard)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import cached_property
from pathlib import Path

import docker

from stackcheck.compose import Compose
from stackcheck.holds import Holds
from stackcheck.mode import Mode, StackConfig
from stackcheck.ops.leftovers import clear
from stackcheck.services import Engine, Service, handle


class StackError(RuntimeError):
    """The stack could not be brought to the state the run needs."""


def docker_client() -> docker.DockerClient:
    """A Docker API client: $DOCKER_HOST if set, else the CLI's current context's endpoint
    (Docker Desktop's socket is not always at /var/run/docker.sock)."""
    import os

    if not os.environ.get("DOCKER_HOST"):
        with suppress(OSError, subprocess.SubprocessError):
            host = subprocess.run(
                ["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            if host:
                return docker.DockerClient(base_url=host)
    return docker.from_env()


class Stack:
    def __init__(
        self,
        config: StackConfig,
        *,
        progress: Callable[[str], None] | None = None,
        holds: Holds | None = None,
    ):
        self.config = config
        self.holds = holds
        self.compose = Compose(config.project, config.stack_dir, config.files)
        self.progress: Callable[[str], None] = progress or (lambda msg: None)
        self.touched: set[str] = set()
        self._services: dict[str, Service] = {}

    @cached_property
    def docker(self) -> docker.DockerClient:
        try:
            client = docker_client()
            client.ping()
        except docker.errors.DockerException as exc:
            raise StackError(
                f"no Docker engine answers ({exc}); start it, or run `./run setup` to install "
                "and start one"
            ) from exc
        return client

    # --- what the stack has --------------------------------------------------------------
    @cached_property
    def defined(self) -> list[str]:
        """Services this stack has: from the compose files, or for an external stack, from the
        containers its project runs."""
        if self.config.mode is Mode.EXTERNAL:
            return sorted(
                {c.labels["com.docker.compose.service"] for c in self._project_containers()}
            )
        if self.config.mode is Mode.SWARM:
            prefix = f"{self.config.project}_"
            found = self.docker.services.list(
                filters={"label": f"com.docker.stack.namespace={self.config.project}"}
            )
            return sorted(s.name.removeprefix(prefix) for s in found)
        return self.compose.services()

    @property
    def is_swarm(self) -> bool:
        return self.config.mode is Mode.SWARM

    @property
    def secrets_dir(self) -> Path:
        """stack/secrets; the swarm's own copy for a swarm stack (stackcheck.ops.swarm)."""
        if self.is_swarm:
            from stackcheck.ops.swarm import secrets_dir

            return secrets_dir()
        return self.config.stack_dir / "secrets"

    @cached_property
    def engine(self) -> Engine:
        """What every handle of this stack shares; made once the engine answers."""
        return Engine(
            docker=self.docker,
            project=self.config.project,
            secrets_dir=self.secrets_dir,
            external=self.config.mode is Mode.EXTERNAL,
            swarm=self.is_swarm,
            progress=self.progress,
            peer=lambda name: self.service(name) if self.has(name) else None,
        )

    def _handle(self, name: str) -> Service:
        return handle(self.engine, name)

    def platform(self) -> str:
        """What the stack runs on, for the evidence: compose, or swarm with its nodes."""
        if not self.is_swarm:
            return "compose (one engine)"
        nodes = self.docker.nodes.list()
        ready = [n for n in nodes if n.attrs.get("Status", {}).get("State") == "ready"]
        roles = ", ".join(
            f"{n.attrs['Description'].get('Hostname', n.id[:12])} ({n.attrs['Spec']['Role']})"
            for n in ready
        )
        return f"swarm, stack {self.config.project}, {len(ready)} node(s): {roles}"

    def _project_containers(self):
        return self.docker.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={self.config.project}"}
        )

    def has(self, name: str) -> bool:
        return name in self.defined

    def service(self, name: str) -> Service:
        if not self.has(name):
            raise StackError(
                f"the stack has no service {name!r} (it has: {', '.join(self.defined)})"
            )
        self.touched.add(name)
        if name not in self._services:
            self._services[name] = self._handle(name)
        return self._services[name]

    def services(self) -> list[Service]:
        return [self.service(n) for n in self.defined]

    def unhealthy(self) -> dict[str, str]:
        """Services not running-and-healthy, with what they are instead; a service that a test
        running beside this one holds down on purpose (stackcheck.holds) is that test's to
        restore and check, not counted here."""
        bad = {}
        held = self.holds.held() if self.holds else {}
        for name in self.defined:
            if name in held:
                continue
            svc = self._handle(name)
            try:
                state, health = svc.state(), svc.health()
            except AssertionError:
                bad[name] = "no container"
                continue
            if state != "running" or health not in {"healthy", "none"}:
                bad[name] = f"{state}/{health}"
        return bad

    # --- lifecycle -----------------------------------------------------------------------
    @contextmanager
    def holding(self, *services: str, by: str) -> Iterator[None]:
        """Say that test `by` keeps `services` down on purpose until the block ends (see
        unhealthy); without a shared registry (no plugin), only a block."""
        if self.holds is None:
            yield
            return
        with self.holds.hold(services, by):
            yield

    def guard_mutation(self, what: str) -> None:
        if self.config.mode is Mode.EXTERNAL:
            raise StackError(f"{what}: refused, the stack is external (observe only)")

    def ensure(self, timeout: float) -> float:
        """Bring the stack to all-healthy as the mode says; return the seconds `up` took (0
        when a reused stack was already healthy)."""
        if self.config.mode is Mode.EXTERNAL:
            if not self._project_containers():
                raise StackError(
                    f"--stack=external: no containers of compose project "
                    f"{self.config.project!r} are running; set STACKCHECK_PROJECT to its name"
                )
            return 0.0
        if self.is_swarm:
            return self._await_swarm(timeout)
        if self.config.mode is Mode.FRESH:
            self.progress("fresh stack: removing containers and volumes of the last run")
            self.down(volumes=True)
        elif not self.unhealthy():
            return 0.0
        return self.up(timeout)

    def _await_swarm(self, timeout: float) -> float:
        """The swarm stack is deployed by `./run deploy swarm`, never by the suite: wait (bounded)
        until each service's task is running and healthy; return the seconds waited."""
        if not self.defined:
            raise StackError(
                f"--stack=swarm: no services of stack {self.config.project!r} in this swarm; "
                "deploy it with `./run deploy swarm` (or set STACKCHECK_SWARM_STACK)"
            )
        start = time.monotonic()
        while bad := self.unhealthy():
            took = time.monotonic() - start
            if took > timeout:
                detail = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
                raise StackError(f"swarm stack not healthy after {took:.0f} s: {detail}")
            time.sleep(2)
        return time.monotonic() - start

    def up(self, timeout: float, services: tuple[str, ...] = ()) -> float:
        self.guard_mutation("up")
        if self.is_swarm:
            raise StackError("up: the swarm stack is deployed by `./run deploy swarm`")
        self.progress(
            f"docker compose up --wait (project {self.config.project}, "
            f"{'offline' if self.config.offline else 'online'} images, deadline {timeout:.0f} s)"
        )
        start = time.monotonic()
        # a container whose network was pruned would fail the whole `up` (stackcheck.ops.leftovers)
        clear(self.docker, self.config.project, self.config.stack_dir, earlier=False,
              say=lambda line: self.progress(f"  {line}"))  # fmt: skip
        code, output = self.compose.stream(
            "up",
            "--detach",
            "--wait",
            # setup built our images once per content; pull_policy build would rebuild them here
            # (a new image id without setup's label: every container of ours recreated)
            "--no-build",
            "--wait-timeout",
            str(int(timeout)),
            *services,
            on_line=lambda line: self.progress(f"  {line.strip()}"),
            timeout=timeout + 120,
        )
        took = time.monotonic() - start
        if code != 0:
            raise StackError(self._explain_failure(output, took))
        self.__dict__.pop("defined", None)
        self.progress(f"stack healthy after {took:.1f} s")
        return took

    def _explain_failure(self, output: str, took: float) -> str:
        lines = [f"`docker compose up --wait` failed after {took:.0f} s:", output.strip()[-2000:]]
        with suppress(Exception):
            for name, what in self.unhealthy().items():
                lines.append(f"--- {name}: {what}; last log lines:")
                svc = self._handle(name)
                lines.append(svc.logs(tail=30).rstrip())
                for probe in svc.health_log()[-2:]:
                    lines.append(
                        f"    health check exit {probe.get('ExitCode')}: "
                        f"{(probe.get('Output') or '').strip()[:300]}"
                    )
        return "\n".join(lines)

    def down(self, *, volumes: bool = False) -> None:
        self.guard_mutation("down")
        if self.is_swarm:
            raise StackError("down: the swarm stack is removed by `./run undeploy swarm`")
        args = ["down", "--remove-orphans", "--timeout", "30"] + (["--volumes"] if volumes else [])
        self.compose.run(*args, timeout=300)

    # --- secrets ---------------------------------------------------------------------------
    def secret(self, name: str, *, service: str | None = None) -> str:
        """A secret's value: from stack/secrets on this host, or, where this user may not read
        it (mode 0400, owned by the service's uid), from inside the service that mounts it."""
        if service is not None:
            return self.service(service).secret(name)
        path: Path = self.secrets_dir / name
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            missing = f"secret {name!r} is not in {path.parent}; run `./run setup`"
            raise StackError(missing) from None
