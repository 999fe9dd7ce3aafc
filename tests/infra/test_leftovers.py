"""SC3 on the real engine: what earlier runs leave (stackcheck.ops.leftovers), made here on
throwaway projects of their own, never the stack's: a container whose network was pruned, and an
earlier checkout at the same stack/ directory. Found on the CI machine, which clones main afresh
at the same path: Compose started the old containers ("network ... not found") and PostgreSQL
refused the new clone's passwords."""

from __future__ import annotations

import uuid
from pathlib import Path

import docker
import pytest

from stackcheck.ops.leftovers import PROJECT_LABEL, WORKDIR_LABEL, clear

pytestmark = [pytest.mark.infra, pytest.mark.writes, pytest.mark.req("SC3")]

IMAGE = "stackcheck/mailer:0.1.0"  # always built, in both modes


class Throwaway:
    """Containers, networks and volumes labelled as Compose labels a project's; all removed at
    the end, whatever the test left."""

    def __init__(self, client: docker.DockerClient):
        self.client = client
        self.projects: set[str] = set()

    def project(self, name: str, workdir: Path, *, running: bool = False) -> dict:
        self.projects.add(name)
        labels = {PROJECT_LABEL: name, WORKDIR_LABEL: str(workdir)}
        net = self.client.networks.create(f"{name}_default", labels={PROJECT_LABEL: name})
        vol = self.client.volumes.create(f"{name}_data", labels={PROJECT_LABEL: name})
        # the volume at the image's VOLUME path: no anonymous volume left behind
        box = self.client.containers.create(
            IMAGE, entrypoint=["sleep", "300"], name=f"{name}-box-1", labels=labels,
            network=net.name, volumes={vol.name: {"bind": "/app/data", "mode": "rw"}},
            user="0", read_only=True,
        )  # fmt: skip
        if running:
            box.start()
        return {"network": net, "volume": vol, "container": box}

    def remove_all(self) -> None:
        for name in self.projects:
            flt = {"label": f"{PROJECT_LABEL}={name}"}
            for c in self.client.containers.list(all=True, filters=flt):
                c.remove(force=True, v=True)
            for n in self.client.networks.list(filters=flt):
                n.remove()
            for v in self.client.volumes.list(filters=flt):
                v.remove(force=True)


@pytest.fixture
def throwaway(docker_client):
    try:
        docker_client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"needs the image {IMAGE} (built by ./run setup)")
    t = Throwaway(docker_client)
    yield t
    t.remove_all()


def _exists(collection, ident: str) -> bool:
    try:
        collection.get(ident)
        return True
    except docker.errors.NotFound:
        return False


@pytest.mark.parametrize("history", ["has run", "never started"])
def test_a_container_whose_network_was_pruned_is_made_anew(
    throwaway, docker_client, tmp_path, history
):
    """As on the CI machine: the container ran and stopped, `docker network prune` removed its
    network, and Compose made a network of the same name anew (a new id). A container that never
    started holds only the network's name, so for it the name's absence is what counts."""
    project = f"stackcheck-lo-{uuid.uuid4().hex[:8]}"
    made = throwaway.project(project, tmp_path, running=history == "has run")
    made["container"].stop(timeout=0)
    made["network"].remove()  # what `docker network prune` does to a stopped container's network
    if history == "has run":
        docker_client.networks.create(made["network"].name, labels={PROJECT_LABEL: project})
    with pytest.raises(docker.errors.APIError, match="not found"):
        made["container"].start()  # the failure Compose met: the container can never start
    done = clear(docker_client, project, tmp_path, earlier=False)
    assert done.orphaned == [made["container"].name]
    assert not _exists(docker_client.containers, made["container"].id)
    assert _exists(docker_client.volumes, made["volume"].name), "the volume must be kept"


def test_an_intact_project_is_left_alone(throwaway, docker_client, tmp_path):
    project = f"stackcheck-lo-{uuid.uuid4().hex[:8]}"
    made = throwaway.project(project, tmp_path, running=True)
    done = clear(docker_client, project, tmp_path)
    assert not done.orphaned and not done.earlier
    made["container"].reload()
    assert made["container"].status == "running"


def test_an_earlier_checkout_here_is_set_aside_and_its_volumes_kept(
    throwaway, docker_client, tmp_path
):
    here, elsewhere = tmp_path / "here/stack", tmp_path / "elsewhere/stack"
    for d in (here, elsewhere):
        d.mkdir(parents=True)
    current = f"stackcheck-{uuid.uuid4().hex[:8]}"
    earlier = f"stackcheck-{uuid.uuid4().hex[:8]}"
    other_path = f"stackcheck-{uuid.uuid4().hex[:8]}"
    t8_like = f"stackcheck-t8-{uuid.uuid4().hex[:8]}"  # a test's throwaway project, same path
    mine = throwaway.project(current, here, running=True)
    old = throwaway.project(earlier, here, running=True)
    away = throwaway.project(other_path, elsewhere)
    t8 = throwaway.project(t8_like, here)

    done = clear(docker_client, current, here)

    assert done.earlier == {earlier: [old["volume"].name]}
    assert not _exists(docker_client.containers, old["container"].id)
    assert not _exists(docker_client.networks, old["network"].id)
    assert _exists(docker_client.volumes, old["volume"].name), "nothing stored is deleted"
    for kept in (mine, away, t8):
        assert _exists(docker_client.containers, kept["container"].id)
        assert _exists(docker_client.networks, kept["network"].id)
    mine["container"].reload()
    assert mine["container"].status == "running"
    assert any("docker volume rm " + old["volume"].name in line for line in done.lines())


def test_an_earlier_checkout_reached_through_a_symlink_is_found(throwaway, docker_client, tmp_path):
    """Compose records the directory as it was given; the same checkout reached through a
    symlinked path (/check -> /srv/check, say) is the same checkout."""
    here = tmp_path / "real/stack"
    here.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    earlier = f"stackcheck-{uuid.uuid4().hex[:8]}"
    old = throwaway.project(earlier, tmp_path / "link/stack")
    done = clear(docker_client, f"stackcheck-{uuid.uuid4().hex[:8]}", here)
    assert done.earlier == {earlier: [old["volume"].name]}


def test_a_network_still_in_use_is_named_and_left(throwaway, docker_client, tmp_path):
    """A container of no project still attached to the earlier checkout's network: Docker will
    not remove the network; the clearing says so and goes on (setup must not stop on it)."""
    earlier = f"stackcheck-{uuid.uuid4().hex[:8]}"
    old = throwaway.project(earlier, tmp_path)
    foreign = docker_client.containers.run(
        IMAGE, entrypoint=["sleep", "300"], detach=True, network=old["network"].name,
        volumes={f"{earlier}_foreign": {"bind": "/app/data", "mode": "rw"}},
        labels={PROJECT_LABEL + ".foreign": earlier}, user="0", read_only=True,
    )  # fmt: skip
    said: list[str] = []
    try:
        done = clear(docker_client, f"stackcheck-{uuid.uuid4().hex[:8]}", tmp_path, say=said.append)
        assert earlier in done.earlier
        assert not _exists(docker_client.containers, old["container"].id)
        assert _exists(docker_client.networks, old["network"].id)
        assert any(f"left {old['network'].name}" in line for line in said), said
    finally:
        foreign.remove(force=True, v=True)
        docker_client.volumes.get(f"{earlier}_foreign").remove(force=True)
