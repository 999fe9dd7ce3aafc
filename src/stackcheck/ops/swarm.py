"""The stack on Docker Swarm (issue 15): render, deploy, undeploy, and the loopback gateway.

`./run deploy swarm` runs `python -m stackcheck.ops.swarm deploy`: a single-node swarm where none
exists, every secret of stack/secrets as a versioned external Docker secret (`<name>_v1`), and
`docker stack deploy` of compose.yml (+ compose.offline.yml) + compose.swarm.yml, merged by
`docker compose config` (the same model the compose stack runs) and changed here only where
every service needs the same Swarm translation (TRANSLATIONS). Swarm publishes ports only on
all addresses (the ingress mesh, or `mode: host`), never on 127.0.0.1: nothing is published by
the stack; a standalone gateway container on the manager joins the non-internal overlays and
publishes each port of compose.yml on 127.0.0.1 only (S4), which is where the suite and an
operator connect. docs/swarm.md says what stands in for every rule Swarm cannot hold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from stackcheck import project_root
from stackcheck.compose import Compose
from stackcheck.mode import ENV_SWARM_STACK as ENV_NAMESPACE
from stackcheck.mode import read_env_file

SWARM_FILE = "compose.swarm.yml"
DEFAULT_NAMESPACE = "stackcheck-swarm"
ENV_REGISTRY = "STACKCHECK_SWARM_REGISTRY"
# Our images under a registry-qualified name: a Swarm node tries to pull a task's image at every
# start (and uses the local one when that fails), so `stackcheck/mailer` would be asked of
# Docker Hub, whoever registered it there. 127.0.0.0/8 is an insecure registry by default, and
# the local registry of a multi-node swarm answers there (docs/swarm.md).
DEFAULT_REGISTRY = "127.0.0.1:5000"
NAMESPACE_LABEL = "com.docker.stack.namespace"
SERVICE_LABEL = "com.docker.swarm.service.name"
GATEWAY_LABEL = "org.stackcheck.ops.swarm-gateway"  # = the namespace the gateway serves
GATEWAY_PORT_LABEL = "org.stackcheck.gateway.port."  # + container port = the service behind it
SECRET_LABEL = "org.stackcheck.secret"
PUBLIC_SECRETS = {"mail_ca_cert": 0o444}  # the CA certificate: public, like compose.yml says
SECRET_MODE = 0o400
_VERSIONED = re.compile(r"^(?P<name>.+)_v(?P<version>\d+)$")

# Keys of the merged compose model Swarm refuses or ignores, dropped from every service, with
# what stands in (docs/swarm.md has the long form; a unit test keeps the two in step).
TRANSLATIONS: dict[str, str] = {
    "build": "images are built by ./run setup; Swarm only runs them",
    "pull_policy": "no Swarm equivalent; our images carry a registry-qualified name instead, so "
    "a node's pull never asks Docker Hub for a stackcheck/* name (S10)",
    "depends_on": "Swarm starts every service at once; each service retries its dependencies "
    "and its health check holds it out of service until they answer (H4)",
    "restart": "deploy.restart_policy of compose.swarm.yml (condition any, max_attempts 3 "
    "within 120 s) (H3)",
    "security_opt": "Swarm has no no-new-privileges: every capability is dropped, including the "
    "bounding set, so a setuid binary gains no capability; the engine-wide "
    '"no-new-privileges": true in daemon.json covers Swarm tasks too (S9)',
    "group_add": "docker-api-proxy gets the socket's group as its primary group "
    "(compose.swarm.yml)",
    "shm_size": "a tmpfs at /dev/shm of the same size",
    "tmpfs": "local volumes of type tmpfs with the same uid, gid, mode and size, mounted with "
    "nocopy: Swarm ignores the short syntax, and its tmpfs mounts take the image directory's "
    "owner and mode",
    "ports": "nothing published by Swarm (ingress and host mode bind every address, never "
    "127.0.0.1): the loopback gateway publishes each on 127.0.0.1 (S4)",
    "container_name": "Swarm names task containers itself",
    "expose": "deprecated for `docker stack deploy` (it warns): on an overlay every port of a "
    "task is reachable by the services on that network, as on compose's bridges",
    "profiles": "profiles are applied by the render (only active services are deployed)",
}


class SwarmError(RuntimeError):
    """The swarm, the deployment or the gateway is not as the step needs."""


def namespace(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE


def registry(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(ENV_REGISTRY) or DEFAULT_REGISTRY


def compose_files(stack_dir: Path) -> tuple[str, ...]:
    """compose.yml, the overrides setup chose (stack/.env), then the Swarm overlay."""
    dotenv = read_env_file(stack_dir / ".env")
    files = [f for f in dotenv.get("COMPOSE_FILE", "compose.yml").split(":") if f]
    return (*files, SWARM_FILE)


def docker(*args: str, timeout: float = 120, check: bool = True, input: str | None = None):
    """Run the docker CLI; a failure raises SwarmError with its stderr."""
    try:
        proc = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, input=input
        )
    except subprocess.TimeoutExpired as exc:
        raise SwarmError(f"`docker {' '.join(args)}` did not finish within {timeout:g} s") from exc
    if check and proc.returncode != 0:
        raise SwarmError(
            f"`docker {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc


# --- render: the merged compose model -> a file for `docker stack deploy` ---------------------
def _uid_gid(user: str | None) -> tuple[str, str]:
    uid, _, gid = str(user or "0").partition(":")
    return uid, gid or uid


_SIZE = re.compile(r"^(\d+)([kmg]?)$", re.IGNORECASE)


def _bytes(size: str) -> int:
    m = _SIZE.match(size.strip())
    if not m:
        raise ValueError(f"not a size: {size!r}")
    return int(m[1]) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m[2].lower()]


def tmpfs_volume(service: str, spec: str) -> tuple[str, dict, dict]:
    """`/run/x:uid=1025,gid=1025,mode=0755,size=16m` -> (volume name, volume, mount): a local
    volume of type tmpfs with the same owner, mode and size, mounted without copying the
    image's directory onto it. Swarm's own tmpfs mounts cannot: their mode and owner are the
    image directory's (root 0755 for Dovecot's /run/dovecot), whatever `tmpfs-mode` says."""
    target, _, opts = spec.partition(":")
    slug = re.sub(r"[^a-z0-9]+", "-", target.lower()).strip("-")
    name = f"tmpfs-{service}-{slug}"
    options = ["nosuid", "nodev", "noexec"] + [o for o in opts.split(",") if o]
    volume = {
        "driver": "local",
        "driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": ",".join(options)},
    }
    mount = {"type": "volume", "source": name, "target": target, "volume": {"nocopy": True}}
    return name, volume, mount


def latest_versions(names: Iterable[str]) -> dict[str, int]:
    """The highest version of each secret among Docker secret names `<name>_v<N>`."""
    out: dict[str, int] = {}
    for full in names:
        m = _VERSIONED.match(full)
        if m:
            out[m["name"]] = max(out.get(m["name"], 0), int(m["version"]))
    return out


def render(
    model: dict,
    versions: Mapping[str, int],
    *,
    registry_prefix: str = DEFAULT_REGISTRY,
    ns: str = DEFAULT_NAMESPACE,
) -> dict:
    """The stack file for `docker stack deploy` from the merged compose model (pure: tested
    on small models in tests/unit/stackcheck/ops/test_swarm.py).

    A secret without a version in `versions` is an error: the stack would not start."""
    services: dict[str, dict] = {}
    used_secrets: set[str] = set()
    used_configs: set[str] = set()
    tmpfs_volumes: dict[str, dict] = {}
    for name, src in model.get("services", {}).items():
        svc = _render_service(name, src, registry_prefix, tmpfs_volumes)
        used_secrets.update(ref["source"] for ref in svc.get("secrets") or [])
        used_configs.update(c["source"] for c in svc.get("configs") or [])
        services[name] = svc
    missing = sorted(s for s in used_secrets if s not in versions)
    if missing:
        raise SwarmError(
            f"no Docker secret for {', '.join(missing)}: `./run deploy swarm` creates them "
            "from stack/secrets"
        )
    out: dict = {"services": services}
    out["networks"] = {
        n: {k: v for k, v in spec.items() if k != "name"}
        for n, spec in (model.get("networks") or {}).items()
        if any(n in (s.get("networks") or {}) for s in services.values())
    }
    out["volumes"] = {
        n: {k: v for k, v in (spec or {}).items() if k != "name"}
        for n, spec in (model.get("volumes") or {}).items()
        if any(
            v.get("type") == "volume" and v.get("source") == n
            for s in services.values()
            for v in s.get("volumes") or []
        )
    }
    out["volumes"].update(tmpfs_volumes)
    out["secrets"] = {
        s: {"external": True, "name": f"{s}_v{versions[s]}"} for s in sorted(used_secrets)
    }
    out["configs"] = _render_configs(model, used_configs, ns)
    return out


def _render_service(name: str, src: dict, registry_prefix: str, tmpfs_volumes: dict) -> dict:
    """One service the Swarm way; its tmpfs mounts become volumes, added to tmpfs_volumes."""
    # `entrypoint: null` (an override that resets the image's) is a type error for the stack
    # schema: leaving it out means the same
    svc = {k: v for k, v in src.items() if k not in TRANSLATIONS and v is not None}
    image = svc.get("image", "")
    if image.startswith("stackcheck/"):
        svc["image"] = f"{registry_prefix}/{image}"
    mounts = list(svc.get("volumes") or [])
    for spec in src.get("tmpfs") or []:
        vname, volume, mount = tmpfs_volume(name, spec)
        tmpfs_volumes[vname] = volume
        mounts.append(mount)
    if src.get("shm_size"):
        size = src["shm_size"]
        size = int(size) if str(size).isdigit() else _bytes(str(size))
        mounts.append({"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": size}})
    if mounts:
        svc["volumes"] = mounts
    uid, gid = _uid_gid(src.get("user"))
    refs = []
    for ref in src.get("secrets") or []:
        ref = {"source": ref} if isinstance(ref, str) else dict(ref)
        ref.setdefault("target", ref["source"])
        ref.update(uid=uid, gid=gid, mode=PUBLIC_SECRETS.get(ref["source"], SECRET_MODE))
        refs.append(ref)
    if refs:
        svc["secrets"] = refs
    res = (svc.get("deploy") or {}).get("resources") or {}
    for part in res.values():  # the stack schema wants cpus as a string
        if isinstance(part, dict) and "cpus" in part:
            part["cpus"] = str(part["cpus"])
    # Swarm admits a task only on a node with its reservation free; compose.yml's CPU
    # reservations add up to 2.17 cores (more during a start-first roll), above a 2-core
    # node: kept as limits, dropped as reservations (memory reservations stay)
    (res.get("reservations") or {}).pop("cpus", None)
    return svc


def _render_configs(model: dict, used: set[str], ns: str) -> dict:
    """Configs are immutable in Swarm: a changed file is a new config, named by its content."""
    configs = {}
    for c in sorted(used):
        path = Path(model["configs"][c]["file"])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.exists() else "none"
        configs[c] = {"file": str(path), "name": f"{ns}_{c}-{digest}"}
    return configs


def secret_files(model: dict) -> dict[str, Path]:
    """Compose secret name -> its file (mail_ca_cert is mail_ca.crt), as compose.yml says."""
    return {
        name: Path(spec["file"])
        for name, spec in (model.get("secrets") or {}).items()
        if spec.get("file")
    }


# --- the swarm ----------------------------------------------------------------------------
def swarm_state() -> tuple[str, bool]:
    """(LocalNodeState, is this node a manager)."""
    info = json.loads(docker("info", "--format", "{{json .Swarm}}").stdout)
    return info.get("LocalNodeState", ""), bool(info.get("ControlAvailable"))


def bridge_address() -> str:
    """docker0's address: reachable from this host and from a worker engine in a container
    (127.0.0.1 is not; docs/swarm.md)."""
    out = docker(
        "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}"
    ).stdout.strip()
    return out or "127.0.0.1"


def ensure_swarm(say) -> None:
    state, manager = swarm_state()
    if state == "active" and manager:
        say("swarm: this engine is already a manager")
        return
    if state == "active":
        raise SwarmError("this engine is a swarm worker: deploy from a manager")
    addr = bridge_address()
    docker("swarm", "init", "--advertise-addr", addr, "--listen-addr", f"{addr}:2377")
    token = docker("swarm", "join-token", "-q", "worker").stdout.strip()
    say(f"swarm: initialised a single-node swarm, manager at {addr}:2377")
    say(f"  more nodes join with: docker swarm join --token {token[:24]}... {addr}:2377")
    say("  (the whole token: docker swarm join-token worker)")


def secret_names() -> list[str]:
    return docker("secret", "ls", "--format", "{{.Name}}").stdout.split()


def ensure_secrets(files: Mapping[str, Path], say) -> dict[str, int]:
    """Create `<name>_v1` for each secret that has no version yet; return the current versions."""
    versions = latest_versions(secret_names())
    created = []
    for name, path in sorted(files.items()):
        if name in versions or not path.exists():
            continue
        docker(
            "secret", "create", "--label", f"{SECRET_LABEL}={name}",
            "--label", "org.stackcheck.version=1", f"{name}_v1", str(path),
        )  # fmt: skip
        versions[name] = 1
        created.append(f"{name}_v1")
    say(
        f"secrets: {len(versions)} versioned Docker secrets"
        + (f", created {len(created)} ({', '.join(created)})" if created else ", none new")
    )
    return versions


def _image_id(image: str) -> str:
    proc = docker("image", "inspect", "--format", "{{.Id}}", image, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def tag_images(stack_file: dict, prefix: str, say, ns: str = DEFAULT_NAMESPACE) -> None:
    """Our images under their registry-qualified name (a tag, never a rebuild), moved to the
    image setup built last; each service gets that image's id as a container label, so a
    rebuilt image changes the task spec and the next deploy rolls the service onto it (with
    --resolve-image never the image name alone would not change). Where the local registry
    runs, a re-tagged image is pushed too: a node pulls at every task start, and a stale
    registry would put the old image back under the name."""
    registry_running = (
        docker(
            "inspect", "--format", "{{.State.Running}}", registry_name(ns), check=False
        ).stdout.strip()
        == "true"
    )
    for svc in stack_file["services"].values():
        image = svc.get("image", "")
        if not image.startswith(prefix + "/"):
            continue
        local = image[len(prefix) + 1 :]
        want = _image_id(local)
        if not want:
            raise SwarmError(f"image {local} is missing: run `./run setup` to build it")
        if _image_id(image) != want:
            docker("tag", local, image)
            say(f"image: tagged {local} ({want[7:19]}) as {image}")
            if registry_running:  # nodes pull at every task start: the registry must agree
                docker("push", "-q", image, timeout=900)
                say(f"registry: pushed {image}")
        labels = svc.get("labels") or {}
        if isinstance(labels, list):
            labels = dict(item.partition("=")[::2] for item in labels)
        svc["labels"] = {**labels, "org.stackcheck.image-id": want}


def state_dir() -> Path:
    d = project_root() / ".stackcheck" / "swarm"
    d.mkdir(parents=True, exist_ok=True)
    return d


ENV_SECRETS = "STACKCHECK_SWARM_SECRETS"


def secrets_dir(env: Mapping[str, str] | None = None) -> Path:
    """The swarm's secret files: a copy of stack/secrets made at the first deploy (mode and
    owner kept), so `./run rotate NAME --swarm` changes the swarm's values and never the
    compose stack's beside it. $STACKCHECK_SWARM_SECRETS names another folder."""
    env = os.environ if env is None else env
    return Path(env.get(ENV_SECRETS) or project_root() / ".stackcheck" / "swarm" / "secrets")


def ensure_secret_files(source: Path, target: Path, say) -> None:
    if target.is_dir() and any(target.iterdir()):
        return
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for f in sorted(source.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            dst = target / f.name
            shutil.copy2(f, dst)
            st = f.stat()
            os.chown(dst, st.st_uid, st.st_gid)
    say(f"secrets: the swarm's files are a copy of {source} in {target}")


def model_of(stack_dir: Path, ns: str) -> dict:
    return Compose(ns, stack_dir, compose_files(stack_dir)).config()


def published_ports(model: dict) -> dict[int, str]:
    """Container port -> service, for every port compose.yml publishes (on loopback)."""
    out: dict[int, str] = {}
    for name, svc in model.get("services", {}).items():
        for p in svc.get("ports") or []:
            target = int(p["target"])
            if target in out:
                raise SwarmError(f"port {target} is published by {out[target]} and {name}")
            out[target] = name
    return out


def gateway_config(ports: Mapping[int, str]) -> str:
    """HAProxy in TCP mode: each published port of compose.yml, forwarded to its service's
    virtual IP on the overlay (resolved by Docker's DNS, so a rescheduled task is found)."""
    lines = [
        "# written by stackcheck.ops.swarm: the swarm stack's loopback gateway (docs/swarm.md)",
        "global",
        "    maxconn 512",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 1h",
        "    timeout server 1h",
        "resolvers docker",
        "    nameserver dns 127.0.0.11:53",
        "    hold valid 5s",
    ]
    for port, service in sorted(ports.items()):
        lines += [
            f"listen {service}_{port}",
            f"    bind :{port}",
            f"    server {service} {service}:{port} resolvers docker init-addr last,libc,none",
        ]
    return "\n".join(lines) + "\n"


def gateway_name(ns: str) -> str:
    return f"{ns}-gateway"


def start_gateway(model: dict, stack_file: dict, ns: str, say) -> None:
    """(Re)create the gateway: the haproxy image of docker-api-proxy, hardened as a service."""
    ports = published_ports(model)
    cfg = state_dir() / "gateway.cfg"
    cfg.write_text(gateway_config(ports), encoding="utf-8")
    cfg.chmod(0o644)
    image = stack_file["services"]["docker-api-proxy"]["image"]
    nets = sorted(
        {
            n
            for name in set(ports.values())
            for n in (model["services"][name].get("networks") or {})
            if not (model["networks"].get(n) or {}).get("internal")
        }
    )
    name = gateway_name(ns)
    docker("rm", "-f", name, check=False)
    labels = [f"--label={GATEWAY_LABEL}={ns}"]
    labels += [f"--label={GATEWAY_PORT_LABEL}{p}={s}" for p, s in ports.items()]
    publish = [f"--publish=127.0.0.1::{p}" for p in sorted(ports)]
    # fmt: off
    docker(
        "run", "--detach", "--name", name, "--network", f"{ns}_{nets[0]}",
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--user", "65534:65534", "--memory", "64m", "--cpus", "0.2", "--pids-limit", "50",
        "--restart", "unless-stopped", "--tmpfs", "/tmp",
        "--log-opt", "max-size=50m", "--log-opt", "max-file=3",
        "--volume", f"{cfg}:/usr/local/etc/haproxy/haproxy.cfg:ro",
        *labels, *publish, image, "haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg",
    )
    # fmt: on
    for n in nets[1:]:
        docker("network", "connect", f"{ns}_{n}", name)
    say(f"gateway: {name} publishes {len(ports)} ports on 127.0.0.1 (networks {', '.join(nets)})")


def gateway_ports(ns: str, service: str, container_port: int) -> list:
    """Where the gateway publishes a service's port on this host ([] when it does not)."""
    from stackcheck.compose import PublishedPort

    name = gateway_name(ns)
    proc = docker("inspect", name, check=False)
    if proc.returncode != 0:
        return []
    attrs = json.loads(proc.stdout)[0]
    if attrs["Config"]["Labels"].get(f"{GATEWAY_PORT_LABEL}{container_port}") != service:
        return []
    bindings = (attrs["NetworkSettings"]["Ports"] or {}).get(f"{container_port}/tcp") or []
    return [PublishedPort(b["HostIp"] or "127.0.0.1", int(b["HostPort"])) for b in bindings]


def service_secrets(ns: str, service: str) -> list[dict]:
    """The secret references of a service's spec (File: Name, UID, GID, Mode; SecretName)."""
    out = docker(
        "service", "inspect", f"{ns}_{service}",
        "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Secrets}}",
    ).stdout.strip()  # fmt: skip
    return json.loads(out) if out and out != "null" else []


REGISTRY_DOCKERFILE = Path("tests") / "swarm" / "registry" / "Dockerfile"


def registry_name(ns: str) -> str:
    return f"{ns}-registry"


def built_image(dockerfile: Path, repo: str, say, timeout: float = 900) -> str:
    """`repo:<sha of the Dockerfile>`, built once (a new tag, never a rebuild of another)."""
    tag = f"{repo}:{hashlib.sha256(dockerfile.read_bytes()).hexdigest()[:12]}"
    if docker("image", "inspect", tag, check=False).returncode != 0:
        say(f"building {tag} ({dockerfile})")
        docker("build", "-q", "-t", tag, str(dockerfile.parent), timeout=timeout)
    return tag


def ensure_registry(ns: str, images: Iterable[str], say=print, timeout: float = 600) -> float:
    """The local registry other nodes pull our images from: Debian's docker-registry in a
    standalone container on the manager, published on 127.0.0.1:5000 (this host pushes there)
    and on the bridge address (other engines on this host pull there), then `images` pushed.
    Returns the seconds the pushes took."""
    name = registry_name(ns)
    if docker("inspect", name, check=False).returncode != 0:
        image = built_image(project_root() / REGISTRY_DOCKERFILE, "stackcheck/swarm-registry", say)
        port = registry().rpartition(":")[2]
        # fmt: off
        docker(
            "run", "--detach", "--name", name, "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--memory", "256m", "--cpus", "0.5",
            "--pids-limit", "100", "--restart", "unless-stopped",
            "--log-opt", "max-size=50m", "--log-opt", "max-file=3",
            "--volume", f"{name}:/var/lib/docker-registry",
            "--publish", f"127.0.0.1:{port}:5000", "--publish", f"{bridge_address()}:{port}:5000",
            image,
        )
        # fmt: on
    deadline = time.monotonic() + 30
    while docker("exec", name, "true", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise SwarmError(f"{name} did not start: {docker('logs', name, check=False).stderr}")
        time.sleep(0.5)
    t0 = time.monotonic()
    for image in images:
        for _ in range(10):  # the registry may still be starting
            proc = docker("push", "-q", image, check=False, timeout=timeout)
            if proc.returncode == 0:
                break
            time.sleep(1)
        else:
            raise SwarmError(f"push {image} to {name} failed: {proc.stderr.strip()}")
        say(f"registry: pushed {image}")
    return time.monotonic() - t0


def services_of(ns: str) -> list[str]:
    out = docker(
        "service", "ls", "--filter", f"label={NAMESPACE_LABEL}={ns}", "--format", "{{.Name}}"
    ).stdout.split()
    return sorted(n.removeprefix(f"{ns}_") for n in out)


def unhealthy(ns: str) -> dict[str, str]:
    """Services being rolled, or whose task on this engine is not running-and-healthy (a
    service with no running task anywhere counts too), with what they are instead."""
    bad: dict[str, str] = {}
    for svc in services_of(ns):
        update = docker(
            "service", "inspect", f"{ns}_{svc}",
            "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        ).stdout.strip()  # fmt: skip
        if update in ("updating", "rollback_started"):  # a roll: done when it has completed
            bad[svc] = update
            continue
        ids = docker(
            "ps", "--filter", f"label={SERVICE_LABEL}={ns}_{svc}", "--format", "{{.ID}}"
        ).stdout.split()
        if not ids:
            tasks = docker(
                "service", "ps", f"{ns}_{svc}", "--filter", "desired-state=running",
                "--format", "{{.CurrentState}}",
            ).stdout.split("\n")  # fmt: skip
            if any(t.startswith("Running") for t in tasks):
                continue  # running on another node: its engine reports its health
            bad[svc] = (tasks[0] or "no task").strip()
            continue
        health = docker(
            "inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", *ids
        ).stdout.split()
        if "healthy" not in health:
            bad[svc] = "/".join(health) or "running, no health check"
    return bad


def wait_healthy(ns: str, timeout: float, say) -> float:
    t0 = time.monotonic()
    last = ""
    while True:
        bad = unhealthy(ns)
        took = time.monotonic() - t0
        if not bad:
            return took
        now = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
        if now != last:
            say(f"  {took:5.1f} s waiting for: {now}")
            last = now
        if took > timeout:
            raise SwarmError(f"not healthy within {timeout:g} s: {now}")
        given_up = [svc for svc in bad if _gave_up(ns, svc)]
        if given_up:  # restart_policy's max_attempts spent: waiting longer changes nothing
            raise SwarmError(
                f"{', '.join(given_up)} failed {RESTARTS_BEFORE_GIVING_UP} times and Swarm "
                f"gave up (max_attempts); `docker service logs {ns}_{given_up[0]}` says why"
            )
        time.sleep(2)


RESTARTS_BEFORE_GIVING_UP = 4  # the first start and compose.swarm.yml's max_attempts: 3


def _gave_up(ns: str, service: str) -> bool:
    """True when the service has no task that is running or about to run, and its failed tasks
    reached the first start plus max_attempts."""
    states = docker(
        "service", "ps", f"{ns}_{service}", "--format", "{{.DesiredState}} {{.CurrentState}}",
        check=False,
    ).stdout.splitlines()  # fmt: skip
    alive = [s for s in states if s.startswith(("Running", "Ready"))]
    failed = [s for s in states if " Failed" in f" {s.split(' ', 1)[-1]}"]
    return not alive and len(failed) >= RESTARTS_BEFORE_GIVING_UP


def prune_secrets(ns: str, say) -> list[str]:
    """Remove every older version of a secret that no service of the stack mounts any more (a
    rotation keeps the one PostgreSQL still mounts; the next deploy moves PostgreSQL on)."""
    names = secret_names()
    latest = latest_versions(names)
    in_use = {r["SecretName"] for svc in services_of(ns) for r in service_secrets(ns, svc)}
    removed = []
    for full in names:
        m = _VERSIONED.match(full)
        old = m and int(m["version"]) < latest[m["name"]] and full not in in_use
        if old and docker("secret", "rm", full, check=False).returncode == 0:
            removed.append(full)
    if removed:
        say(f"secrets: removed versions no service mounts any more: {', '.join(removed)}")
    return removed


def deploy(stack_dir: Path, *, timeout: float = 600, say=print) -> float:
    """Swarm, secrets, images, `docker stack deploy`, gateway; wait until all healthy."""
    ns = namespace()
    t0 = time.monotonic()
    if not (stack_dir / ".env").is_file() or not (stack_dir / "secrets").is_dir():
        raise SwarmError("stack/.env or stack/secrets is missing: run `./run setup` first")
    ensure_swarm(say)
    model = model_of(stack_dir, ns)
    sdir = secrets_dir()
    ensure_secret_files(stack_dir / "secrets", sdir, say)
    files = {name: sdir / path.name for name, path in secret_files(model).items()}
    versions = ensure_secrets(files, say)
    stack_file = render(model, versions, registry_prefix=registry(), ns=ns)
    tag_images(stack_file, registry(), say, ns)
    path = state_dir() / "stack.yml"
    path.write_text(yaml.safe_dump(stack_file, sort_keys=False), encoding="utf-8")
    say(f"docker stack deploy {ns} ({len(stack_file['services'])} services, file {path})")
    # never resolve image digests: that asks a registry about our image names (S10)
    out = docker(
        "stack", "deploy", "--resolve-image", "never", "--prune", "--detach=true",
        "--compose-file", str(path), ns, timeout=300,
    )  # fmt: skip
    for line in (out.stdout + out.stderr).splitlines():
        if line.strip() and "detach" not in line:
            say(f"  {line.strip()}")
    start_gateway(model, stack_file, ns, say)
    took = wait_healthy(ns, timeout, say)
    prune_secrets(ns, say)
    total = time.monotonic() - t0
    say(f"swarm stack {ns}: every service healthy {took:.1f} s after deploy ({total:.1f} s in all)")
    return total


def undeploy(*, timeout: float = 180, say=print) -> None:
    """Remove the stack, its gateway and its secrets' versions; volumes are kept (as `down`)."""
    ns = namespace()
    docker("rm", "-f", gateway_name(ns), registry_name(ns), check=False)
    if services_of(ns):
        docker("stack", "rm", ns, timeout=120)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # networks and containers go after the services
        left = (
            docker("ps", "-a", "-q", "--filter", f"label={NAMESPACE_LABEL}={ns}").stdout.split()
            + docker(
                "network", "ls", "-q", "--filter", f"label={NAMESPACE_LABEL}={ns}"
            ).stdout.split()
        )
        if not left:
            break
        time.sleep(2)
    else:
        raise SwarmError(f"stack {ns} still has containers or networks after {timeout:g} s")
    say(
        f"swarm stack {ns} removed (volumes and secrets kept; the swarm stays: leaving it breaks "
        "the names of every compose stack on this engine until they restart, docs/swarm.md)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./run deploy swarm", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["deploy", "undeploy", "render"])
    ap.add_argument("--timeout", type=float, default=600, help="seconds until all healthy")
    args = ap.parse_args(argv)
    stack_dir = project_root() / "stack"
    try:
        if args.action == "deploy":
            deploy(stack_dir, timeout=args.timeout)
        elif args.action == "undeploy":
            undeploy()
        else:
            ns = namespace()
            model = model_of(stack_dir, ns)
            versions = latest_versions(secret_names())
            print(yaml.safe_dump(render(model, versions, registry_prefix=registry(), ns=ns)))
    except SwarmError as exc:
        print(f"swarm: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
