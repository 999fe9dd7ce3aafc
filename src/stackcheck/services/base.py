"""One service of the stack: ports, exec, logs, health, stats and lifecycle, via the Docker API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from docker.models.containers import Container

from stackcheck.compose import PublishedPort
from stackcheck.waits import wait_for

if TYPE_CHECKING:
    from stackcheck.stack import Stack

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class ServiceError(AssertionError):
    """The service is not in the state a test needs (missing, not running, no such port)."""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


def cpu_percent(stats: dict) -> float:
    """CPU use as `docker stats` computes it: container delta over system delta, times CPUs."""
    cpu, pre = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
    try:
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    except KeyError:
        return 0.0
    online = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or []) or 1
    if system_delta <= 0 or cpu_delta < 0:
        return 0.0
    return cpu_delta / system_delta * online * 100.0


class Service:
    def __init__(self, stack: Stack, name: str):
        self.stack = stack
        self.name = name

    def __repr__(self) -> str:
        return f"<Service {self.name} of {self.stack.config.project}>"

    # --- the container -------------------------------------------------------------------
    def containers(self) -> list[Container]:
        return self.stack.docker.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.stack.config.project}",
                    f"com.docker.compose.service={self.name}",
                ]
            },
        )

    @property
    def container(self) -> Container:
        found = self.containers()
        if not found:
            raise ServiceError(
                f"service {self.name!r} has no container in project {self.stack.config.project!r}"
            )
        # one replica per service in this stack; prefer a running one if there are several
        found.sort(key=lambda c: c.status != "running")
        return found[0]

    def state(self) -> str:
        return self.container.attrs["State"]["Status"]

    def health(self) -> str:
        """'healthy', 'unhealthy', 'starting', or 'none' when the image has no health check."""
        state = self.container.attrs["State"]
        return (state.get("Health") or {}).get("Status", "none")

    def health_log(self) -> list[dict]:
        return (self.container.attrs["State"].get("Health") or {}).get("Log", [])

    # --- network -----------------------------------------------------------------------
    def published(self, container_port: int, protocol: str = "tcp") -> list[PublishedPort]:
        ports = self.container.attrs["NetworkSettings"]["Ports"] or {}
        bindings = ports.get(f"{container_port}/{protocol}") or []
        return [PublishedPort(b["HostIp"] or "0.0.0.0", int(b["HostPort"])) for b in bindings]

    def port(self, container_port: int, protocol: str = "tcp") -> PublishedPort:
        """The host side of a published port, preferring a loopback binding."""
        ports = self.published(container_port, protocol)
        if not ports:
            raise ServiceError(
                f"{self.name} publishes no host port for {container_port}/{protocol}"
            )
        ports.sort(key=lambda p: p.host not in LOOPBACK)
        p = ports[0]
        host = "127.0.0.1" if p.host in {"0.0.0.0", "", "::"} else p.host
        return PublishedPort(host, p.port)

    # --- commands and logs -----------------------------------------------------------------
    def exec(
        self, cmd: str | list[str], *, user: str | None = None, env: dict[str, str] | None = None
    ) -> ExecResult:
        kwargs = {"user": user} if user else {}
        code, out = self.container.exec_run(cmd, environment=env, demux=False, **kwargs)
        return ExecResult(code, (out or b"").decode("utf-8", "replace"))

    def logs(self, tail: int | str = "all", since: float | None = None) -> str:
        kwargs = {"since": int(since)} if since else {}
        raw = self.container.logs(stdout=True, stderr=True, tail=tail, **kwargs)
        return raw.decode("utf-8", "replace")

    def stats(self) -> dict:
        """One stats sample: cpu_percent, memory use and limit (bytes), pids."""
        raw = self.container.stats(stream=False)
        mem = raw.get("memory_stats", {})
        return {
            "cpu_percent": cpu_percent(raw),
            "memory_bytes": mem.get("usage", 0),
            "memory_limit_bytes": mem.get("limit", 0),
            "pids": raw.get("pids_stats", {}).get("current", 0),
        }

    # --- lifecycle ---------------------------------------------------------------------
    def _mutating(self) -> None:
        self.stack.guard_mutation(f"{self.name}: stop/start/kill/restart")

    def stop(self, timeout: int = 30) -> None:
        self._mutating()
        self.container.stop(timeout=timeout)

    def start(self) -> None:
        self._mutating()
        self.container.start()

    def kill(self, signal: str = "SIGKILL") -> None:
        self._mutating()
        self.container.kill(signal=signal)

    def restart(self, timeout: int = 30) -> None:
        self._mutating()
        self.container.restart(timeout=timeout)

    def wait_healthy(self, timeout: float) -> float:
        """Wait until the health check reports healthy; return the seconds it took."""
        _, took = wait_for(
            self.health,
            timeout=timeout,
            interval=0.5,
            ok=lambda h: h == "healthy",
            what=f"{self.name} to be healthy",
            progress=self.stack.progress,
        )
        return took


class SwarmService(Service):
    """A service of a Swarm stack (--stack=swarm): its task containers on this engine, found by
    `com.docker.swarm.service.name`, and its ports on the loopback gateway (ops.swarm)."""

    @property
    def full_name(self) -> str:
        return f"{self.stack.config.project}_{self.name}"

    def containers(self) -> list[Container]:
        return self.stack.docker.containers.list(
            all=True, filters={"label": f"com.docker.swarm.service.name={self.full_name}"}
        )

    @property
    def container(self) -> Container:
        """The running task's container (a killed task's stays, exited, until Swarm prunes
        its history): running first, then the newest."""
        found = self.containers()
        if not found:
            raise ServiceError(
                f"service {self.name!r} has no task container on this engine in stack "
                f"{self.stack.config.project!r}"
            )
        found.sort(key=lambda c: (c.status != "running", -_created(c)))
        return found[0]

    def tasks(self, *, desired: str | None = "running") -> list[dict]:
        """The service's tasks as the swarm reports them (on every node)."""
        svc = self.stack.docker.services.get(self.full_name)
        filters = {"desired-state": desired} if desired else None
        return svc.tasks(filters=filters)

    def _elsewhere(self) -> bool:
        """No task container runs on this engine, but a task of the service runs on a node."""
        if any(c.status == "running" for c in self.containers()):
            return False
        return any((t.get("Status") or {}).get("State") == "running" for t in self.tasks())

    def state(self) -> str:
        """The local task container's state; for a task on another node (no running container
        here), the swarm's task state."""
        return "running" if self._elsewhere() else super().state()

    def health(self) -> str:
        """As Service.health; for a task on another node: Swarm reports a task with a health
        check `running` only after its check passed, and replaces it when it turns unhealthy,
        so a running task there is a healthy one (T1 in Swarm terms)."""
        return "healthy" if self._elsewhere() else super().health()

    def published(self, container_port: int, protocol: str = "tcp") -> list[PublishedPort]:
        from stackcheck.ops.swarm import GATEWAY_LABEL, GATEWAY_PORT_LABEL

        gateways = self.stack.docker.containers.list(
            filters={"label": f"{GATEWAY_LABEL}={self.stack.config.project}"}
        )
        out: list[PublishedPort] = []
        for gw in gateways:
            if gw.labels.get(f"{GATEWAY_PORT_LABEL}{container_port}") != self.name:
                continue
            ports = gw.attrs["NetworkSettings"]["Ports"] or {}
            for b in ports.get(f"{container_port}/{protocol}") or []:
                out.append(PublishedPort(b["HostIp"] or "0.0.0.0", int(b["HostPort"])))
        return out


def _created(c: Container) -> float:
    from datetime import datetime

    raw = c.attrs.get("Created", "")
    try:
        return datetime.fromisoformat(raw[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0
