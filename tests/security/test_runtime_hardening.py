"""Hardening proven on the running containers, not only in the YAML (S1, S2, S4, S5, S9, H2, H5).

Parametrised per service of the running stack, so a new service is checked without a new test.
What is inside a container (PID 1's status, file modes, a write attempt) is read through
testinfra's docker backend (`docker exec ... /bin/sh -c`), what Docker decided from its inspect.
"""

import json
import secrets
from contextlib import suppress
from pathlib import Path

import docker.errors
import pytest
import testinfra

from stackcheck.compose import Compose
from stackcheck.services.base import Engine, RunResult, run_container
from stackcheck.waits import wait_for

pytestmark = pytest.mark.security

CAP_EFF_NONE = "0000000000000000"
STACK_DIR = Path(__file__).resolve().parents[2] / "stack"


@pytest.fixture(scope="module")
def services(stack):
    found = {svc.name: svc for svc in stack.services()}
    assert found, "the stack runs no services: every check below would pass vacuously"
    return found


def inside(svc) -> testinfra.host.Host:
    """The service's container as a testinfra host."""
    return testinfra.get_host(f"docker://{svc.container.id}")


def pid1_status(svc, field: str) -> str:
    """A field of PID 1's /proc status (Uid: real, effective, ...; CapEff: ...)."""
    for line in inside(svc).file("/proc/1/status").content_string.splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{svc.name}: no {field} in /proc/1/status")


@pytest.mark.req("S2")
def test_no_service_runs_as_root(services, sla):
    offenders = {}
    for name, svc in services.items():
        configured = svc.user
        uid = pid1_status(svc, "Uid").split()[1]  # effective
        if configured in {"", "root", "0", "0:0"} or uid == "0":
            offenders[name] = f"configured {configured!r}, PID 1 effective uid {uid}"
    sla.record(
        "S2",
        f"{len(services) - len(offenders)}/{len(services)} services non-root",
        how="docker inspect Config.User and the effective uid of PID 1 in /proc/1/status",
    )
    assert not offenders, offenders


@pytest.mark.req("S4")
def test_published_ports_bind_loopback_only(services, sla):
    bindings, open_ = [], []
    for name, svc in services.items():
        for port, binds in svc.port_bindings().items():
            for b in binds:
                bindings.append(f"{name} {b.host}:{b.port}->{port}")
                if b.host not in {"127.0.0.1", "::1"}:
                    open_.append(bindings[-1])
    sla.record(
        "S4",
        f"{len(bindings) - len(open_)}/{len(bindings)} published ports on loopback",
        how="docker inspect NetworkSettings.Ports: " + "; ".join(bindings),
    )
    assert not open_, f"published beyond loopback: {open_}"


@pytest.mark.req("S5")
def test_root_filesystems_are_read_only(services, sla):
    writable = {}
    for name, svc in services.items():
        declared = svc.read_only_rootfs
        probe = inside(svc).run("touch /.stackcheck-probe")
        if not declared or probe.rc == 0:
            writable[name] = f"ReadonlyRootfs={declared}, write to / -> rc {probe.rc}"
    sla.record(
        "S5",
        f"{len(services) - len(writable)}/{len(services)} read-only root filesystems",
        how="HostConfig.ReadonlyRootfs and a write attempt to / inside each container",
    )
    assert not writable, writable


@pytest.mark.req("S9")
def test_capabilities_dropped_and_no_new_privileges(services, sla):
    bad = {}
    for name, svc in services.items():
        host = svc.host_config
        cap_eff = pid1_status(svc, "CapEff")
        nnp = any(o.startswith("no-new-privileges") for o in host.get("SecurityOpt") or [])
        if "ALL" not in (host.get("CapDrop") or []) or not nnp or cap_eff != CAP_EFF_NONE:
            bad[name] = (
                f"CapDrop={host.get('CapDrop')}, SecurityOpt={host.get('SecurityOpt')}, "
                f"CapEff={cap_eff}"
            )
    sla.record(
        "S9",
        f"{len(services) - len(bad)}/{len(services)} services without capabilities",
        how="HostConfig.CapDrop/SecurityOpt and CapEff of PID 1 (0 = no capabilities)",
    )
    assert not bad, bad


@pytest.mark.req("H2")
def test_every_container_has_limits_and_reservations(services, sla):
    rows, missing = [], {}
    for name, svc in services.items():
        host = svc.host_config
        mem, cpus, res = (
            host.get("Memory", 0),
            host.get("NanoCpus", 0) / 1e9,
            host.get("MemoryReservation", 0),
        )
        rows.append(f"{name} {mem / 2**20:.0f}M/{cpus:g} cpu, reserved {res / 2**20:.0f}M")
        if not (mem and cpus and res):
            missing[name] = rows[-1]
    sla.record(
        "H2", "; ".join(rows), how="docker inspect HostConfig.Memory/NanoCpus/MemoryReservation"
    )
    assert not missing, missing


@pytest.mark.req("S1")
def test_no_secret_value_in_inspect_or_environment(stack, services, sla):
    """The secret values themselves are searched for, in every container's full inspect output
    (env, command, labels, mounts) and in the environment of its PID 1."""
    values = {
        n: stack.secret(n, service=s)
        for n, s in [("postgres_password", "postgres"), ("redis_password", "redis")]
        if s in services
    }
    leaks = []
    for name, svc in services.items():
        inspect = json.dumps(svc.inspect())
        environ = svc.exec(["sh", "-c", "tr '\\0' '\\n' < /proc/1/environ"]).output
        for secret, value in values.items():
            if value in inspect:
                leaks.append(f"{secret} in docker inspect of {name}")
            if value in environ:
                leaks.append(f"{secret} in the environment of {name}")
    sla.record(
        "S1",
        f"{len(values)} secret values searched in {len(services)} containers: {len(leaks)} found",
        how="docker inspect JSON and /proc/1/environ",
    )
    assert not leaks, leaks


# Public files mounted the way secrets are, readable by everyone on purpose: the stack's mail CA
# certificate (stackcheck.ops.mailtls), which the mailers, Alertmanager and the suite all trust.
PUBLIC = {"/run/secrets/mail_ca_cert": "444"}


@pytest.mark.req("S1")
def test_secret_files_are_mode_0400(services):
    wrong = {}
    for name, svc in services.items():
        host = inside(svc)
        secrets_dir = host.file("/run/secrets")
        if not secrets_dir.is_directory:
            continue
        for entry in secrets_dir.listdir():
            path = f"/run/secrets/{entry}"
            mode = f"{host.file(path).mode:o}"
            if mode != PUBLIC.get(path, "400"):
                wrong[f"{name}:{path}"] = mode
    assert not wrong, f"secret files not mode 0400: {wrong}"


@pytest.mark.req("H5")
@pytest.mark.needs("postgres")
def test_postgres_tuned_for_its_limits(stack, sla):
    want = {"shared_buffers": "256MB", "effective_cache_size": "1536MB", "max_connections": "100"}
    with stack.service("postgres").connect() as conn:
        got = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in want}
    sla.record("H5", ", ".join(f"{k}={v}" for k, v in got.items()), how="SHOW over psycopg")
    assert got == want


def _postgres_server_environ(
    engine: Engine, cfg: dict, secret: Path, with_wrapper: bool
) -> tuple[str, float]:
    """PID 1's environment of a throwaway server from the stack's postgres image (tmpfs PGDATA,
    no network, the stack's user and hardening flags), once it accepts TCP connections."""
    entry = cfg["entrypoint"]
    wrapper = next(v["source"] for v in cfg["volumes"] if v["target"] == entry[-1])
    volumes = [f"{secret}:/run/secrets/postgres_password:ro"]
    if with_wrapper:
        volumes.append(f"{wrapper}:{entry[-1]}:ro")
    container = engine.docker.containers.run(
        cfg["image"],
        cfg["command"],
        entrypoint=entry if with_wrapper else None,
        detach=True,
        network_mode="none",
        user=str(cfg["user"]),
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        tmpfs={
            "/var/lib/postgresql": "uid=999,gid=999,mode=0755",
            "/var/run/postgresql": "uid=999,gid=999,mode=0775",
            "/tmp": "mode=1777",
        },
        volumes=volumes,
        environment={
            "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
            "POSTGRES_USER": "postgres",
        },
    )

    def ready() -> bool:
        return container.exec_run(["pg_isready", "-q", "-h", "127.0.0.1"]).exit_code == 0

    try:
        _, took = wait_for(
            ready,
            timeout=90,
            what="the throwaway postgres to accept TCP connections",
        )
        res = container.exec_run(["sh", "-c", "tr '\\0' '\\n' < /proc/1/environ"])
        assert res.exit_code == 0, res.output
        environ = res.output.decode("utf-8", "replace")
    finally:
        container.remove(force=True)
    return environ, took


@pytest.mark.req("S1")
@pytest.mark.needs("postgres")
def test_postgres_password_is_kept_out_of_the_server_by_the_wrapper(stack, tmp_path, sla):
    """The image's own entrypoint (official 18.x, and the offline stand-in, which copies it) exports
    POSTGRES_PASSWORD read from POSTGRES_PASSWORD_FILE and execs postgres with it: the password
    sits in PID 1's environment. The stack's wrapper (stack/config/postgres/entrypoint.sh) runs
    the image's docker-ensure-initdb.sh as a child and execs postgres without it. Both run here in
    throwaway containers with a throwaway password, so the check is seen to fail without the fix;
    test_no_secret_value_in_inspect_or_environment checks the running server."""
    cfg = stack.compose.config()["services"]["postgres"]
    assert cfg.get("entrypoint"), "postgres runs the image's entrypoint: no wrapper configured"
    value = secrets.token_hex(16)
    secret = tmp_path / "postgres_password"
    secret.write_text(value + "\n")
    secret.chmod(0o444)
    bare, _ = _postgres_server_environ(stack.engine, cfg, secret, with_wrapper=False)
    wrapped, took = _postgres_server_environ(stack.engine, cfg, secret, with_wrapper=True)
    assert f"POSTGRES_PASSWORD={value}" in bare, (
        "the image's entrypoint no longer exports POSTGRES_PASSWORD: the stand-in drifted from "
        "the official image, and this test would prove nothing"
    )
    assert value not in wrapped, "the wrapper leaves the password in the server's environment"
    assert "POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password" in wrapped
    sla.record(
        "S1",
        "postgres PID 1 environment: password present with the image's entrypoint, absent with "
        "the stack's wrapper",
        how=f"throwaway containers of {cfg['image']} (tmpfs PGDATA, initdb + start, ready in "
        f"{took:.1f} s with the wrapper); /proc/1/environ searched for the password",
    )


BASE_IMAGE = "debian:bookworm-slim"  # setup's offline base; has chown like MinIO's ubi-micro


@pytest.mark.req("S2", "S9", "A6")
def test_minio_volume_init_makes_a_new_volume_writable_with_chown_only(docker_client):
    """The compose file's minio-volume-init, run as configured (user, cap_drop/cap_add, read-only,
    no network, no-new-privileges, its entrypoint) on a throwaway volume, with the Debian base in
    place of the MinIO image (none offline): before it, MinIO's uid cannot create .minio.sys in
    a new root-owned volume; after it, it can; without CAP_CHOWN the same job fails."""
    try:
        docker_client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"needs the local image {BASE_IMAGE} (offline setup builds it)")
    cfg = Compose("stackcheck-policy", STACK_DIR, ("compose.yml",)).config(profiles=["*"])
    init, minio = cfg["services"]["minio-volume-init"], cfg["services"]["minio"]
    volume = f"stackcheck-minio-init-{secrets.token_hex(4)}"
    data = {volume: {"bind": "/data", "mode": "rw"}}

    def run_init(cap_add: list[str]) -> RunResult:
        return run_container(
            docker_client, BASE_IMAGE, None, user=str(init["user"]),
            network_mode=init["network_mode"], read_only=True, cap_drop=["ALL"],
            cap_add=cap_add, security_opt=init["security_opt"], volumes=data,
            entrypoint=init["entrypoint"], timeout=60,
        )  # fmt: skip

    def as_minio(cmd: str) -> RunResult:
        return run_container(
            docker_client, BASE_IMAGE, ["sh", "-c", cmd], user=str(minio["user"]),
            network_mode="none", read_only=True, cap_drop=["ALL"], volumes=data, timeout=60,
        )  # fmt: skip

    docker_client.volumes.create(volume)
    try:
        fresh = as_minio("stat -c '%u:%g %a' /data; mkdir /data/.minio.sys")
        assert fresh.stdout.startswith("0:0 755") and fresh.exit_code != 0, fresh
        without = run_init([])
        assert without.exit_code != 0, f"chown succeeded without CAP_CHOWN: {without}"
        done = run_init(init["cap_add"])
        assert done.exit_code == 0, done.stderr
        after = as_minio("mkdir /data/.minio.sys && stat -c '%u:%g %a' /data")
        assert after.exit_code == 0 and after.stdout.strip() == f"{minio['user']} 755", after
    finally:
        with suppress(docker.errors.NotFound):
            docker_client.volumes.get(volume).remove(force=True)
