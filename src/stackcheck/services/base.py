"""One service of the stack: ports, exec, logs, health, stats, lifecycle and what `docker
inspect` says about it, via the Docker API. A handle knows the engine (`Engine`), never the
Stack: the stack makes the engine and the handles, so nothing here imports it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import requests
from docker.models.containers import Container

from stackcheck.compose import PublishedPort
from stackcheck.waits import wait_for

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class ServiceError(AssertionError):
    """The service is not in the state a test needs (missing, not running, no such port)."""


class MutationRefused(RuntimeError):
    """A stop/start/kill/restart of a stack the suite only observes (--stack=external)."""


def _quiet(msg: str) -> None:
    """Progress goes nowhere unless the stack hands a reporter in."""


@dataclass(frozen=True)
class Engine:
    """What a handle needs from the stack, and no more: the Docker client (the one way the
    harness reaches Docker), the compose project (or Swarm namespace), where the secrets are,
    whether mutations are allowed, and how to find a sibling service (a client that needs
    another service's secret, e.g. the mail server's login from the mailer)."""

    docker: docker.DockerClient
    project: str
    secrets_dir: Path = Path("stack/secrets")
    external: bool = False  # observe only: every mutation is refused
    swarm: bool = False  # project is a Swarm stack namespace (SwarmService finds the tasks)
    progress: Callable[[str], None] = _quiet
    # the stack's handle of another service, None when the stack has no such service
    peer: Callable[[str], Service | None] = field(default=lambda name: None, compare=False)

    def guard(self, what: str) -> None:
        """Refuse a mutation of an external stack (the one rule of --stack=external)."""
        if self.external:
            raise MutationRefused(f"{what}: refused, the stack is external (observe only)")

    def run(self, image: str, command: list[str] | None = None, **kwargs: Any) -> RunResult:
        """A throwaway container run to its end (run_container)."""
        return run_container(self.docker, image, command, **kwargs)

    def sibling(self, name: str) -> Service:
        """The handle of another service of the stack; ServiceError if it has none."""
        found = self.peer(name)
        if found is None:
            raise ServiceError(f"the stack has no service {name!r}")
        return found


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class RunResult:
    """A throwaway container's run: exit code (None: still running at the deadline, killed),
    and what it wrote to stdout and stderr."""

    exit_code: int | None
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_container(
    client: docker.DockerClient,
    image: str,
    command: list[str] | None = None,
    *,
    timeout: float = 120,
    **create: Any,
) -> RunResult:
    """`docker run --rm IMAGE COMMAND` through the SDK (`create` takes the keywords of
    `containers.create`: user, network_mode, read_only, tmpfs, volumes, entrypoint ...): start,
    wait at most `timeout` seconds, collect both streams, remove. The CLI would be a second way
    to reach Docker, and parsing its output a second contract."""
    container = client.containers.create(image, command, **create)
    try:
        container.start()
        try:
            code: int | None = container.wait(timeout=timeout)["StatusCode"]
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            # the wait timed out: it still runs
            code = None
            with suppress(docker.errors.APIError):  # it may have ended just now
                container.kill()
        out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
        err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
    finally:
        # with its anonymous volumes, as --rm does (the mailer image declares VOLUME /app/data:
        # 18 were left per run); named volumes passed in are never removed
        container.remove(force=True, v=True)
    return RunResult(code, out, err)


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


def parse_time(raw: str) -> datetime:
    """Docker's RFC 3339 UTC time with nanoseconds (`2024-05-01T10:00:00.123456789Z`);
    datetime takes at most microseconds."""
    base, _, frac = raw.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{base}.{frac[:6].ljust(6, '0')}").replace(tzinfo=UTC)


def port_bindings(ports: dict | None) -> dict[str, list[PublishedPort]]:
    """NetworkSettings.Ports as `{"5432/tcp": [PublishedPort]}` (unpublished ports: [])."""
    return {
        spec: [PublishedPort(b["HostIp"] or "0.0.0.0", int(b["HostPort"])) for b in binds or []]
        for spec, binds in (ports or {}).items()
    }


class Service:
    """The handle of one compose service; a kind of service with clients of its own subclasses
    it (stackcheck.services.HANDLES)."""

    def __init__(self, engine: Engine, name: str):
        self.engine = engine
        self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} of {self.engine.project}>"

    # --- the container -------------------------------------------------------------------
    def containers(self) -> list[Container]:
        return self.engine.docker.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.engine.project}",
                    f"com.docker.compose.service={self.name}",
                ]
            },
        )

    @property
    def container(self) -> Container:
        found = self.containers()
        if not found:
            raise ServiceError(
                f"service {self.name!r} has no container in project {self.engine.project!r}"
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

    # --- what `docker inspect` says (read fresh at each call) -------------------------------
    def inspect(self) -> dict[str, Any]:
        """The container's whole `docker inspect` document, for checks that must look at all
        of it (no secret in it)."""
        return self.container.attrs

    @property
    def pid(self) -> int:
        """The host PID of the container's PID 1 (0 when it is not running)."""
        return int(self.inspect()["State"]["Pid"])

    @property
    def restart_count(self) -> int:
        """How often the engine restarted the container (its restart policy, a failed health
        check under autoheal): a crash shows here."""
        return int(self.inspect()["RestartCount"])

    @property
    def exit_code(self) -> int:
        """The exit code of the container's last run (0 while it runs or after a clean stop)."""
        return int(self.inspect()["State"]["ExitCode"])

    @property
    def oom_killed(self) -> bool:
        return bool(self.inspect()["State"]["OOMKilled"])

    @property
    def started_at(self) -> datetime:
        return parse_time(self.inspect()["State"]["StartedAt"])

    @property
    def env(self) -> dict[str, str]:
        """The configured environment (image's and compose's), as a dict."""
        return dict(e.split("=", 1) for e in self.inspect()["Config"].get("Env") or [])

    @property
    def user(self) -> str:
        """The configured user (`Config.User`); Docker runs an empty one as root."""
        return self.inspect()["Config"].get("User") or "root"

    @property
    def image(self) -> str:
        """The image as configured (`Config.Image`: name:tag, not the id)."""
        return self.inspect()["Config"]["Image"]

    @property
    def healthcheck(self) -> dict[str, Any]:
        """The configured health check (`Config.Healthcheck`: Test, Interval, Retries ...)."""
        return self.inspect()["Config"].get("Healthcheck") or {}

    @property
    def host_config(self) -> dict[str, Any]:
        """`HostConfig`: limits, capabilities, security options, tmpfs, log driver."""
        return self.inspect()["HostConfig"]

    @property
    def restart_policy(self) -> str:
        return (self.host_config.get("RestartPolicy") or {}).get("Name") or "no"

    @property
    def read_only_rootfs(self) -> bool:
        return bool(self.host_config.get("ReadonlyRootfs", False))

    @property
    def log_config(self) -> dict[str, Any]:
        """The log driver and its options (`{"Type": "json-file", "Config": {"max-size": ..}}`)."""
        return self.host_config.get("LogConfig") or {}

    @property
    def log_path(self) -> str:
        """The json-file log's path on the host ('' for another log driver)."""
        return self.inspect().get("LogPath") or ""

    @property
    def networks(self) -> list[str]:
        """The networks the container is attached to (full names: `<project>_backend`)."""
        return list(self.inspect()["NetworkSettings"]["Networks"] or {})

    def port_bindings(self) -> dict[str, list[PublishedPort]]:
        """Every container port and where the host publishes it: `{"5432/tcp": [...]}`."""
        return port_bindings(self.inspect()["NetworkSettings"]["Ports"])

    # --- network -----------------------------------------------------------------------
    def published(self, container_port: int, protocol: str = "tcp") -> list[PublishedPort]:
        return self.port_bindings().get(f"{container_port}/{protocol}", [])

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

    def http(self, container_port: int, **kwargs: Any) -> httpx.Client:
        """An HTTP client on a published port (the caller closes it: `with ... as client`)."""
        port = self.port(container_port)
        return httpx.Client(base_url=f"http://{port.host}:{port.port}", timeout=10, **kwargs)

    # --- commands and logs -----------------------------------------------------------------
    def exec(
        self, cmd: str | list[str], *, user: str | None = None, env: dict[str, str] | None = None
    ) -> ExecResult:
        kwargs = {"user": user} if user else {}
        code, out = self.container.exec_run(cmd, environment=env, demux=False, **kwargs)
        return ExecResult(code, (out or b"").decode("utf-8", "replace"))

    def exec_background(self, cmd: list[str]) -> RunningExec:
        """Start a command in the container and return at once (`docker exec` in the
        background): for a test that holds one run while it starts another."""
        return start_exec(self.engine.docker, self.container.id, cmd)

    def secret(self, name: str) -> str:
        """A secret's value: from the stack's secrets folder on this host, or, where this user
        may not read it (mode 0400, owned by the service's uid) or it is not here (a stack set
        up elsewhere), from inside this service, which mounts it."""
        path = self.engine.secrets_dir / name
        try:
            return path.read_text(encoding="utf-8").strip()
        except (PermissionError, FileNotFoundError):
            pass
        res = self.exec(["cat", f"/run/secrets/{name}"])
        if res.exit_code != 0:
            raise ServiceError(
                f"cannot read secret {name!r} from {self.name} (nor {path}): {res.output.strip()}"
            )
        return res.output.strip()

    def scrape(self, port: int, path: str = "/metrics") -> str:
        """An HTTP page the service serves to the stack's networks only (its own /metrics),
        read from inside the container with its python3 (the mailer and backup images)."""
        code = (
            "import urllib.request;"
            f"print(urllib.request.urlopen('http://127.0.0.1:{port}{path}',timeout=5).read()"
            ".decode())"
        )
        res = self.exec(["python3", "-c", code])
        assert res.exit_code == 0, f"{self.name}: GET :{port}{path} failed: {res.output}"
        return res.output

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
        self.engine.guard(f"{self.name}: stop/start/kill/restart")

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
            progress=self.engine.progress,
        )
        return took


class SwarmService(Service):
    """A service of a Swarm stack (--stack=swarm): its task containers on this engine, found by
    `com.docker.swarm.service.name`, and its ports on the loopback gateway (ops.swarm)."""

    @property
    def full_name(self) -> str:
        return f"{self.engine.project}_{self.name}"

    def containers(self) -> list[Container]:
        return self.engine.docker.containers.list(
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
                f"{self.engine.project!r}"
            )
        found.sort(key=lambda c: (c.status != "running", -_created(c)))
        return found[0]

    @property
    def task_template(self) -> dict[str, Any]:
        """The service spec's TaskTemplate (resources, placement, container spec): what Swarm
        keeps outside the containers, e.g. the memory reservation."""
        return self.engine.docker.services.get(self.full_name).attrs["Spec"]["TaskTemplate"]

    def tasks(self, *, desired: str | None = "running") -> list[dict]:
        """The service's tasks as the swarm reports them (on every node)."""
        svc = self.engine.docker.services.get(self.full_name)
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

        gateways = self.engine.docker.containers.list(
            filters={"label": f"{GATEWAY_LABEL}={self.engine.project}"}
        )
        out: list[PublishedPort] = []
        for gw in gateways:
            if gw.labels.get(f"{GATEWAY_PORT_LABEL}{container_port}") != self.name:
                continue
            out += port_bindings(gw.attrs["NetworkSettings"]["Ports"]).get(
                f"{container_port}/{protocol}", []
            )
        return out


def start_exec(client: docker.DockerClient, container: str, cmd: list[str]) -> RunningExec:
    """`docker exec CONTAINER CMD` started in the background (container: id or name)."""
    exec_id = client.api.exec_create(container, cmd)["Id"]
    return RunningExec(client.api, exec_id, client.api.exec_start(exec_id, stream=True))


class RunningExec:
    """A command started by Service.exec_background; its output is read as it comes (a thread),
    so a chatty command never blocks on a full pipe."""

    def __init__(self, api: docker.APIClient, exec_id: str, stream: Any):
        self._api, self._id, self._chunks = api, exec_id, []
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: Any) -> None:
        for chunk in stream:
            self._chunks.append(chunk)

    def wait(self, timeout: float) -> ExecResult:
        """The exit code and the whole output, once the command ended (TimeoutError if not)."""
        self._reader.join(timeout)
        if self._reader.is_alive():
            raise TimeoutError(f"exec {self._id[:12]} still runs after {timeout:g} s")
        code = self._api.exec_inspect(self._id).get("ExitCode")
        out = b"".join(self._chunks).decode("utf-8", "replace")
        return ExecResult(-1 if code is None else int(code), out)


def _created(c: Container) -> float:
    raw = c.attrs.get("Created", "")
    try:
        return datetime.fromisoformat(raw[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0
