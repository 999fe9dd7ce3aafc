"""`pytest -n N` (pytest-xdist) against one stack: one bring-up, the tests that must be alone
run last and alone, and one evidence from every worker's records.

Why a scheduler of our own: xdist's `load` hands any test to any worker, so a stopped database
or a 1,700-mail replay would land in the middle of another worker's latency measurement. Here
the tests that disrupt the stack, measure performance or flood it (`alone`, see
`must_run_alone`) are held back until every other test has finished and the other workers have
stopped; then one worker runs them in collection order (recovery last), as a serial run would.

The workers learn nothing from the controller but what `workerinput` carries, and the
controller sees no test items (xdist collects on the workers only): the workers write the node
IDs that must run alone to a file the controller's scheduler reads once all have collected.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from xdist.scheduler import LoadScheduling

ALONE_KEY = "stackcheck_alone_file"
OUTPUT_KEY = "stackcheck"
STATE_DIR = ".stackcheck/xdist"
BRING_UP_WAIT = 1800.0  # s: another worker's `up --wait` (cold start deadline plus build slack)


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def is_controller(config: pytest.Config) -> bool:
    """The xdist controller of a `-n N` run: it schedules and reports, runs no test."""
    return not is_worker(config) and bool(getattr(config.option, "numprocesses", None))


def state_dir(config: pytest.Config) -> Path:
    d = config.rootpath / STATE_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


def must_run_alone(item: pytest.Item, impact: str) -> bool:
    """Tests that must not share the stack with another test: those that disrupt it, those that
    measure it (perf: a parallel test's load would be in the numbers), and those marked
    `alone` (they load the stack enough to disturb the others' timings)."""
    return (
        impact == "disrupts"
        or item.get_closest_marker("perf") is not None
        or item.get_closest_marker("alone") is not None
    )


def write_alone(config: pytest.Config, nodeids: list[str]) -> None:
    """On a worker: publish which collected tests must run alone (every worker writes the same
    list; the replace is atomic, so the controller never reads half a file)."""
    path = Path(config.workerinput[ALONE_KEY])
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(nodeids), encoding="utf-8")
    tmp.replace(path)


def configure_node(config: pytest.Config, node: Any) -> None:
    """On the controller, before a worker starts: where the workers write the alone list."""
    uid = node.workerinput["testrunuid"]
    node.workerinput[ALONE_KEY] = str(state_dir(config) / f"alone-{uid}.json")
    _forget_old(state_dir(config))


def _forget_old(directory: Path, max_age: float = 86400.0) -> None:
    now = time.time()
    for p in directory.glob("*-*"):
        try:
            if now - p.stat().st_mtime > max_age and p.suffix != ".lock":
                p.unlink()
        except OSError:
            pass


@contextmanager
def bring_up_turn(config: pytest.Config) -> Iterator[bool]:
    """Serialise the workers' stack bring-up; yield True for the first worker of this run (the
    one that may start it fresh), False for the others (they reuse what it brought up). Outside
    xdist, always True."""
    if not is_worker(config):
        yield True
        return
    d = state_dir(config)
    stamp = d / f"up-{config.workerinput['testrunuid']}"
    with FileLock(str(d / "stack.lock"), timeout=BRING_UP_WAIT):
        first = not stamp.exists()
        yield first
        stamp.touch()  # only once the bring-up succeeded: after a failure the next one tries


def share(config: pytest.Config, key: str, *, start: Callable[[], None]) -> None:
    """Become a user of a resource the workers share (the Ollama double): the first user of the
    run starts it, the others find it running. Pair with `unshare`. Outside xdist: start."""
    if not is_worker(config):
        start()
        return
    with _users(config, key) as users:
        if not users:
            start()
        users.add(config.workerinput["workerid"])


def unshare(config: pytest.Config, key: str, *, stop: Callable[[], None]) -> None:
    """Stop being a user; the last one stops the resource (a later user starts it again)."""
    if not is_worker(config):
        stop()
        return
    with _users(config, key) as users:
        users.discard(config.workerinput["workerid"])
        if not users:
            stop()


@contextmanager
def _users(config: pytest.Config, key: str) -> Iterator[set[str]]:
    d = state_dir(config)
    path = d / f"{key}-{config.workerinput['testrunuid']}.users"
    with FileLock(str(d / f"{key}.lock"), timeout=BRING_UP_WAIT):
        users = set(path.read_text("utf-8").split()) if path.exists() else set()
        yield users
        path.write_text("\n".join(sorted(users)), encoding="utf-8")


# --- the scheduler ---------------------------------------------------------------------------
class AloneLastScheduling(LoadScheduling):
    """xdist's load scheduling for the shared tests; the alone tests afterwards, on one
    worker, once the others have finished (see the module docstring)."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self.deferred: list[int] = []
        self.alone_sent = False

    @property
    def tests_finished(self) -> bool:
        return not self.deferred and super().tests_finished

    @property
    def has_pending(self) -> bool:
        return bool(self.deferred) or super().has_pending

    def _alone_ids(self) -> set[str]:
        node = next(iter(self.node2pending))
        try:
            return set(json.loads(Path(node.workerinput[ALONE_KEY]).read_text("utf-8")))
        except (OSError, ValueError, KeyError):
            return set()  # nothing published: nothing held back (plain load scheduling)

    def schedule(self) -> None:
        if self.collection is not None or not self._check_nodes_have_same_collection():
            super().schedule()
            return
        collection = next(iter(self.node2collection.values()))
        alone = self._alone_ids()
        self.deferred = [i for i, nid in enumerate(collection) if nid in alone]
        if not self.deferred:
            super().schedule()
            return
        self.collection = collection
        self.pending[:] = [i for i in range(len(collection)) if collection[i] not in alone]
        if self.maxschedchunk is None:
            self.maxschedchunk = len(collection)
        chunk = max(2, min(len(self.pending) // len(self.nodes) // 4, self.maxschedchunk))
        for node in self.nodes:
            self._send_tests(node, chunk)
        self._maybe_run_alone()

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        if node.shutting_down:
            return
        if self.pending or not self.deferred:
            super().check_schedule(node, duration)
        else:
            self._maybe_run_alone()

    def remove_node(self, node: Any) -> str | None:
        crashed = super().remove_node(node)
        if self.deferred and self.node2pending:
            self._maybe_run_alone()
        return crashed

    def _maybe_run_alone(self) -> None:
        """Once the shared tests are all handed out: stop every worker but one; when that
        one is the last and holds at most the one test it cannot start without a next one,
        hand it the alone tests."""
        if self.pending or not self.deferred or self.alone_sent:
            return
        live = [n for n in self.node2pending if not n.shutting_down]
        if not live:
            return
        runner = min(live, key=lambda n: len(self.node2pending[n]))
        for n in live:
            if n is not runner:
                n.shutdown()
        if len(self.node2pending) > 1 or len(self.node2pending[runner]) > 1:
            return  # the others are still finishing theirs
        self.log(f"running {len(self.deferred)} tests alone on {runner.gateway.id}")
        self.alone_sent = True
        self.node2pending[runner].extend(self.deferred)
        runner.send_runtest_some(self.deferred)
        self.deferred = []
        runner.shutdown()


def make_scheduler(config: pytest.Config, log: Any) -> AloneLastScheduling:
    return AloneLastScheduling(config, log)


# --- one stack, one evidence -------------------------------------------------------------------
def worker_output(config: pytest.Config, payload: dict) -> None:
    """On a worker at its session's end: what the controller merges into the run's evidence."""
    config.workeroutput[OUTPUT_KEY] = payload


def node_output(node: Any) -> dict | None:
    return (getattr(node, "workeroutput", None) or {}).get(OUTPUT_KEY)
