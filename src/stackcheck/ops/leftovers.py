"""What earlier runs left on this engine, cleared before the stack starts, because Compose reuses
what it finds and then fails in ways that name neither cause. Two kinds, both found on a CI
machine that clones main afresh at the same path every time:

- A container of this project attached to a network that no longer exists. `docker network
  prune` removes the networks of stopped containers; Compose (2.26 here) then creates the
  network anew but starts the old container, and Docker answers "network ... not found". Such a
  container can never start again: it is removed, so that Compose makes it anew. Volumes stay.
- An earlier checkout at this path (`./run` names the project after the path and the checkout's
  secrets, stack/secrets/.stack-id). Its secrets went with it, so its volumes cannot serve this
  one: PostgreSQL refuses the new passwords and n8n the new encryption key. Its containers and
  networks are removed (they hold ports, memory and address pools); its volumes are kept and
  named, with the command that removes them. Nothing stored is deleted.

`python -m stackcheck.ops.leftovers` runs both for stack/ (setup does); `Stack.up` runs the
first before every `up`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker

PROJECT_LABEL = "com.docker.compose.project"
WORKDIR_LABEL = "com.docker.compose.project.working_dir"
# the names `./run` gives (project_name); others (T8's throwaway projects, STACKCHECK_PROJECT)
# are never touched
CHECKOUT_PROJECT = re.compile(r"stackcheck-[0-9a-f]{8}")


@dataclass
class Cleared:
    orphaned: list[str] = field(default_factory=list)  # containers removed: their network is gone
    earlier: dict[str, list[str]] = field(default_factory=dict)  # project -> volumes kept

    def lines(self) -> list[str]:
        out = []
        if self.orphaned:
            out.append(
                f"removed {len(self.orphaned)} container(s) whose network no longer exists "
                f"(Compose makes them anew; volumes kept): {', '.join(sorted(self.orphaned))}"
            )
        for project, volumes in sorted(self.earlier.items()):
            rm = (
                f"; to use them again, put that checkout's stack/secrets back in place of this "
                f"one's; to delete them: docker volume rm {' '.join(volumes)}"
                if volumes
                else ""
            )
            out.append(
                f"an earlier checkout at this path left project {project}: its containers and "
                f"networks removed; its secrets went with it, so its {len(volumes)} volume(s) "
                f"cannot serve this checkout and are kept as they are{rm}"
            )
        return out


def _project_filter(project: str) -> dict:
    return {"label": f"{PROJECT_LABEL}={project}"}


def orphaned(client: docker.DockerClient, project: str) -> list:
    """The project's containers attached to a network that no longer exists."""
    networks = client.networks.list()
    ids, names = {n.id for n in networks}, {n.name for n in networks}

    def gone(name: str, endpoint: dict) -> bool:
        # a container that has run holds the network's id; one never started only its name
        if endpoint.get("NetworkID"):
            return endpoint["NetworkID"] not in ids
        return name not in names and name not in {"host", "none", "default"}

    found = []
    for c in client.containers.list(all=True, filters=_project_filter(project)):
        nets = (c.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        if any(gone(name, endpoint or {}) for name, endpoint in nets.items()):
            found.append(c)
    return found


def earlier_checkouts(client: docker.DockerClient, project: str, stack_dir: Path) -> list[str]:
    """Projects `./run` named for another checkout at this same stack/ directory."""
    here = stack_dir.resolve()  # Compose records the path as given: symlinks resolved on both
    names = set()
    for c in client.containers.list(all=True, filters={"label": WORKDIR_LABEL}):
        labels = c.labels or {}
        name = labels.get(PROJECT_LABEL, "")
        if (
            name != project
            and CHECKOUT_PROJECT.fullmatch(name)
            and Path(labels.get(WORKDIR_LABEL, "")).resolve() == here
        ):
            names.add(name)
    return sorted(names)


def _remove(thing, say: Callable[[str], None], **kwargs) -> None:
    """Remove a container or network; one already gone is fine, one Docker will not remove
    (a network a foreign container still uses) is named and left."""
    try:
        thing.remove(**kwargs)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        say(f"left {thing.name}: Docker would not remove it ({exc.explanation or exc})")


def set_aside(
    client: docker.DockerClient, project: str, say: Callable[[str], None] = lambda line: None
) -> list[str]:
    """Remove a project's containers and networks; return the names of its volumes (kept)."""
    for c in client.containers.list(all=True, filters=_project_filter(project)):
        _remove(c, say, force=True)
    for n in client.networks.list(filters=_project_filter(project)):
        _remove(n, say)
    return sorted(v.name for v in client.volumes.list(filters=_project_filter(project)))


def clear(
    client: docker.DockerClient,
    project: str,
    stack_dir: Path,
    *,
    earlier: bool = True,
    say: Callable[[str], None] = lambda line: None,
) -> Cleared:
    """Both kinds of leftovers for `project` (the second only with `earlier`)."""
    done = Cleared()
    for c in orphaned(client, project):
        done.orphaned.append(c.name)
        _remove(c, say, force=True)
    if earlier:
        for name in earlier_checkouts(client, project, stack_dir):
            done.earlier[name] = set_aside(client, name, say)
    for line in done.lines():
        say(line)
    return done


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os

    from stackcheck import project_root
    from stackcheck.mode import Mode, resolve
    from stackcheck.stack import docker_client

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack-dir", type=Path, default=project_root() / "stack")
    args = ap.parse_args(argv)
    cfg = resolve(option_mode=None, option_teardown=False, env=os.environ, stack_dir=args.stack_dir)
    if cfg.mode in (Mode.EXTERNAL, Mode.SWARM):
        print(f"skipped: the {cfg.mode.value} stack is not this checkout's to clear")
        return 0
    try:
        done = clear(docker_client(), cfg.project, args.stack_dir, say=print)
    except docker.errors.DockerException as exc:  # setup goes on: the suite's `up` will say more
        print(f"could not look at what earlier runs left: {exc}")
        return 1
    if not (done.orphaned or done.earlier):
        print(f"none (project {cfg.project})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
