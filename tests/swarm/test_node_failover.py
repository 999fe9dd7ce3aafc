"""Past one machine (issue 15): a second Docker engine in a container (the project's Debian base
with Debian's docker.io, vfs storage, privileged for this test only) joins the swarm as a
worker, the ecom mailer is moved onto it, and the worker is stopped in the middle of a burst:
the mailer's task is rescheduled on the manager and every mail is stored exactly once.

Bounded (every wait has a deadline), torn down afterwards (the worker leaves, its node is
removed, the mailer runs on the manager again), and skipped naming the reason where this engine
cannot run a nested engine. Images reach the worker through the local registry (Debian's
docker-registry, stackcheck.ops.swarm.ensure_registry)."""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path

import docker.errors
import pytest

from stackcheck.mailflow import PROFILES
from stackcheck.ops import swarm
from stackcheck.services.base import start_exec
from stackcheck.waits import wait_for

pytestmark = [pytest.mark.swarm, pytest.mark.recovery, pytest.mark.disrupts]

HERE = Path(__file__).resolve().parent
WORKER = "stackcheck-swarm-worker"
SERVICE = "ecom-mailer"


def in_worker(stack, *args: str, timeout: float = 120, check: bool = True) -> str:
    """`docker ARGS` run by the worker's own engine (the CLI inside the worker container)."""
    res = start_exec(stack.docker, WORKER, ["docker", *args]).wait(timeout)
    if check and res.exit_code != 0:
        raise AssertionError(f"docker {' '.join(args)} in {WORKER}: {res.output[-1000:]}")
    return res.output


def remove_worker(stack) -> None:
    with suppress(docker.errors.NotFound):
        stack.docker.containers.get(WORKER).remove(force=True)


def worker_image() -> str:
    try:
        return swarm.built_image(HERE / "worker" / "Dockerfile", "stackcheck/swarm-worker", print)
    except swarm.SwarmError as exc:
        pytest.skip(f"cannot build the worker engine's image (Debian docker.io): {exc}")


def node_of_running_task(stack, ns: str) -> str:
    """The host name of the node that runs the service's task (`docker service ps`' NODE)."""
    tasks = stack.docker.services.get(f"{ns}_{SERVICE}").tasks(filters={"desired-state": "running"})
    for task in tasks:
        if (task.get("Status") or {}).get("State") == "running":
            return stack.docker.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"]
    return ""


@pytest.fixture
def worker(stack):
    """A worker node in a privileged container, joined to the swarm; removed afterwards."""
    image = worker_image()
    remove_worker(stack)
    try:
        container = stack.docker.containers.run(
            image,
            detach=True,
            privileged=True,
            name=WORKER,
            hostname=WORKER,
            environment={"REGISTRY": f"{swarm.bridge_address()}:5000"},
        )
    except docker.errors.APIError as exc:
        pytest.skip(f"this engine cannot run a nested engine (privileged container): {exc}"[-400:])
    try:
        try:
            wait_for(
                lambda: in_worker(stack, "info", timeout=10),
                timeout=60,
                what="the worker engine to answer",
            )
        except Exception as exc:
            logs = container.logs(tail=20).decode("utf-8", "replace")
            pytest.skip(f"the nested engine does not start here ({exc}); its log: {logs[-500:]}")
        manager = swarm.bridge_address()
        stack.docker.swarm.reload()
        token = stack.docker.swarm.attrs["JoinTokens"]["Worker"]
        container.reload()
        ip = container.attrs["NetworkSettings"]["IPAddress"]
        in_worker(
            stack,
            "swarm", "join", "--advertise-addr", ip, "--token", token, f"{manager}:2377",
            timeout=60,
        )  # fmt: skip
        wait_for(
            lambda: stack.docker.nodes.get(WORKER).attrs["Status"]["State"] == "ready",
            timeout=60,
            what="the worker node ready",
        )
        yield WORKER
    finally:
        remove_worker(stack)
        with suppress(docker.errors.APIError):
            stack.docker.nodes.get(WORKER).remove(force=True)


@pytest.mark.req("E4", "SLA-R2")
def test_worker_lost_mid_burst_mailer_rescheduled_on_the_manager(
    stack, worker, mail, ecom_db, ollama, sla
):
    if ollama is None:
        pytest.skip("needs the Ollama double to pace the burst; a real Ollama is configured")
    ns = stack.config.project
    mailer = stack.service(SERVICE)
    image = mailer.task_template["ContainerSpec"]["Image"].split("@")[0]
    pushed = swarm.ensure_registry(ns, [image], say=stack.progress)
    # the scheduler spreads a service's task to the node with the fewest tasks: the new worker
    t0 = time.monotonic()
    stack.docker.services.get(f"{ns}_{SERVICE}").force_update()  # `service update --force`
    wait_for(  # converged: its one running task is the one the scheduler put on the worker
        lambda: node_of_running_task(stack, ns),
        timeout=300,
        interval=1,
        ok=lambda node: node == WORKER,
        what=f"{SERVICE} placed on the worker",
    )
    on_worker = stack.service(SERVICE)  # T1 across nodes: no container here, its task there
    assert (on_worker.state(), on_worker.health()) == ("running", "healthy")
    moved = time.monotonic() - t0
    ollama.control(delay_s=0.3)
    try:
        sent = [
            mail.mail(
                PROFILES["ecom"], f"Failover {i}", f"Failover {i}", sender=f"fo{i}@example.org"
            )
            for i in range(30)
        ]
        wait_for(
            lambda: len(
                ecom_db.query(
                    "SELECT 1 FROM emails WHERE message_id = ANY(%s)",
                    ([s.message_id for s in sent],),
                )
            ),
            timeout=120,
            interval=0.2,
            ok=lambda n: n >= 3,
            what="the first mails of the burst stored by the worker's mailer",
        )
        lost_at = time.monotonic()
        stack.docker.containers.get(WORKER).kill()  # the node is gone: no graceful stop, no leave
        wait_for(
            lambda: node_of_running_task(stack, ns) == stack.docker.info()["Name"],
            timeout=180,
            interval=1,
            what=f"{SERVICE} rescheduled on the manager",
        )
        svc = stack.service(SERVICE)
        svc.wait_healthy(timeout=sla.threshold("SLA-R2").value)
        recovered = time.monotonic() - lost_at
        ids = [s.message_id for s in sent]
        counts, _ = wait_for(
            lambda: dict(
                ecom_db.query(
                    "SELECT message_id, count(*) FROM emails WHERE message_id = ANY(%s) "
                    "GROUP BY message_id",
                    (ids,),
                )
            ),
            timeout=180,
            interval=0.5,
            ok=lambda c: len(c) == len(ids),
            what="all 30 mails stored",
        )
    finally:
        ollama.control(delay_s=0)
    assert all(n == 1 for n in counts.values()), {k: v for k, v in counts.items() if v != 1}
    sla.record(
        "SLA-R2",
        recovered,
        unit="s",
        how=f"Swarm, 2 nodes: worker running {SERVICE} killed mid-burst until its task ran "
        f"healthy on the manager (pushing its image to the local registry took {pushed:.0f} s, "
        f"moving it onto the worker {moved:.0f} s)",
    )
