"""`pytest -n N` (pytest-xdist) against one stack: one bring-up, the tests that must be alone
run last and alone, and one evidence from every worker's records.

Why a scheduler of our own: xdist's `load` hands any test to any worker, so a stopped database
or a 1,700-mail replay would land in the middle of another worker's latency measurement. Here
the tests that disrupt the stack, measure performance or flood it (`alone`, see
`must_run_alone`) are held back until every other test has finished and the other workers have
stopped; then one worker runs them in collection order (recovery last), as a serial run would.

One exception, declared per test: a `background` test mostly waits on a window the contract
sets (an alert rule's `for:`, three failed health checks) with a few named services down. It
runs on a second worker ("lane") while the first runs the alone tests that neither disrupt what
it holds down or observes nor need what it holds down (`markers.may_run_beside`: undeclared
means no). The alone tests collected before the first of those (the external-mode check, which
must see a quiet stack) run first while the second lane waits; the others after the background
ones have ended. Of those beside it, the `settled` ones go first: they need services past their
health checks' start period, which the tests that restart services would begin anew. A settled
test that names a due moment (the SLA-H1 test: just before a mailer's next probe) is held back
instead while the tests that leave its services alone run one at a time, and is sent when that
moment is near (stackcheck.due). No shared test overlaps an alone one (`lane_barrier`).

The tests of our own code (tests/unit, tests/component: `markers.stack_free`) touch no stack, so
with two lanes they do not take turns in the shared phase: they fill the lanes where they would
idle, on the second after its background tests, on the first after its last alone test, at the
lowest CPU priority (`free_test_started`), so the stack's measurements keep the cores.

The workers learn nothing from the controller but what `workerinput` carries, and the
controller sees no test items (xdist collects on the workers only): the workers write the node
IDs that must run alone to a file the controller's scheduler reads once all have collected.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from xdist.scheduler import LoadScheduling

from stackcheck import due
from stackcheck.waits import wait_for

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


def write_alone(
    config: pytest.Config,
    nodeids: Sequence[str],
    background: Sequence[str] = (),
    beside: Sequence[str] = (),
    free: Sequence[str] = (),
    settled: Sequence[str] = (),
    timed: Sequence[str] = (),
    early: Sequence[str] = (),
) -> None:
    """On a worker: publish which collected tests must run alone, which of them run in the
    background lane, which may run beside it (`settled`: those first; `timed`: settled tests
    held back until their due moment, while the `early` ones run) and which need no stack
    (every worker writes the same; the replace is atomic, so the controller never reads half a
    file)."""
    path = Path(config.workerinput[ALONE_KEY])
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    plan = {
        "alone": list(nodeids),
        "background": list(background),
        "beside": list(beside),
        "free": list(free),
        "settled": list(settled),
        "timed": list(timed),
        "early": list(early),
    }
    tmp.write_text(json.dumps(plan), encoding="utf-8")
    tmp.replace(path)


def run_uid(config: pytest.Config) -> str:
    """This run's id: xdist's testrunuid on a worker, the process id otherwise."""
    if is_worker(config):
        return config.workerinput["testrunuid"]
    return f"pid{os.getpid()}"


def holds_path(config: pytest.Config) -> Path:
    """Where this run's workers share the services a test holds down (stackcheck.holds)."""
    return state_dir(config) / f"held-{run_uid(config)}.json"


def lanes_path(directory: Path, uid: str) -> Path:
    """The two lanes' worker ids, written by the controller when the alone phase starts."""
    return directory / f"lanes-{uid}.json"


def ready_path(directory: Path, uid: str, worker: str) -> Path:
    """Exists once `worker` has finished its shared tests (or has ended)."""
    return directory / f"lane-ready-{uid}-{worker}"


def lead_done_path(directory: Path, uid: str) -> Path:
    """Exists once the first lane has run the alone tests that must come before the lane."""
    return directory / f"lane-lead-done-{uid}"


def lane_barrier(config: pytest.Config, beside: bool, timeout: float = BRING_UP_WAIT) -> None:
    """On a worker, before each test while two lanes run (nothing outside that phase).

    The first lane runs its leading tests (those collected before the first that may run
    beside the background ones: the external-mode check, say, which must see a quiet stack)
    while the second waits; at its first `beside` test it lets the second go and waits until
    the second has finished its last shared test and begun its background ones. So no shared
    test overlaps an alone one, and nothing runs beside the leading tests."""
    if not is_worker(config):
        return
    d, uid = state_dir(config), config.workerinput["testrunuid"]
    try:
        first, second = json.loads(lanes_path(d, uid).read_text("utf-8"))
    except (OSError, ValueError):
        return
    me, state = config.workerinput["workerid"], config.stash.setdefault(_lane_key, set())
    if me == second and "waited" not in state:
        wait_for(
            lead_done_path(d, uid).exists,
            timeout=timeout,
            interval=0.2,
            what="the first lane's leading tests",
        )
        state.add("waited")
    elif me == first and beside and "ready" not in state:
        state.add("ready")
        lead_done_path(d, uid).touch()
        wait_for(
            ready_path(d, uid, second).exists, timeout=timeout, interval=0.2, what="the second lane"
        )


def lane_started(config: pytest.Config) -> None:
    """On the second lane, at its first background test: its shared tests are done."""
    if not is_worker(config):
        return
    d, uid = state_dir(config), config.workerinput["testrunuid"]
    ready_path(d, uid, config.workerinput["workerid"]).touch()


def free_test_started(config: pytest.Config) -> None:
    """On a worker, before a stack-free test (they run only once the alone phase has begun):
    from here on this worker runs at the lowest CPU priority, so that the measurements on the
    other lane and the stack's own processes keep the two cores. Only stack-free tests follow
    on this worker, so it never needs to go back."""
    if not is_worker(config) or config.stash.get(_idle_key, False):
        return
    # only in the two lanes' phase: elsewhere (one worker) stack tests may still follow
    if lanes_path(state_dir(config), config.workerinput["testrunuid"]).exists():
        config.stash[_idle_key] = True
        lowest_cpu_priority()


def publish_due(config: pytest.Config, ran: str, stack: Any) -> None:
    """On a worker, after a test: the timed tests' due moments, for the scheduler (due.py)."""
    if is_worker(config) and config.stash.get(due.due_key, None):
        due.publish(config, state_dir(config), config.workerinput["testrunuid"], ran, stack)


def lowest_cpu_priority() -> None:
    """Nice 19 for this process and what it starts, in a session and so a scheduler autogroup
    of its own whose nice is 19 too. The nice value alone is not enough: with autogroups (the
    kernel default) it counts only inside the session's group, which as a whole weighs as much
    as each container's cgroup; a replay beside the stack-free tests took 79 s instead of 48 s."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    try:
        os.setsid()  # not a process group leader under xdist: a new session, a new autogroup
        Path("/proc/self/autogroup").write_text("19", encoding="ascii")
    except OSError:
        pass  # no autogroups (or already a session leader): the nice value is what there is


_idle_key = pytest.StashKey[bool]()
_lane_key = pytest.StashKey[set]()


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
    worker (two when there are background tests), once the others have finished (see the
    module docstring)."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self.deferred: list[int] = []
        self.background: list[int] = []  # run on the second lane
        self.background_left: set[int] = set()  # ... and not yet finished
        self.beside: set[int] = set()  # may run on the first lane while the second runs
        self.settled: set[int] = set()  # ... and go first there (markers: `settled`)
        self.timed: list[int] = []  # settled tests held back until their due moment (due.py)
        self.early: list[int] = []  # ... while these run on the first lane, one at a time
        self.early_took: list[float] = []  # ... and took this long
        self.tail: list[int] = []  # the first lane's tests after the timed ones
        self.rest: list[int] = []  # the first lane's, once the second lane's background ended
        self.free: list[int] = []  # stack-free tests: they fill the lanes where they idle
        self.lane: tuple[Any, Any] | None = None  # (first, second) lane in the alone phase
        self.lane_open = False  # the second lane runs: the first holds the rest's first test
        self.alone_sent = False
        self._fed_at = 0.0  # when the first lane was last fed an early test

    @property
    def tests_finished(self) -> bool:
        held = self.deferred or self.lane_open or self.free or self.timed
        return not held and super().tests_finished

    @property
    def has_pending(self) -> bool:
        held = self.deferred or self.free or self.timed
        return bool(held) or self.lane_open or super().has_pending

    def _plan(self) -> dict[str, list[str]]:
        node = next(iter(self.node2pending))
        try:
            plan = json.loads(Path(node.workerinput[ALONE_KEY]).read_text("utf-8"))
        except (OSError, ValueError, KeyError):
            return {}  # nothing published: nothing held back (plain load scheduling)
        return plan if isinstance(plan, dict) else {"alone": plan}

    def schedule(self) -> None:
        if self.collection is not None or not self._check_nodes_have_same_collection():
            super().schedule()
            return
        collection = next(iter(self.node2collection.values()))
        plan = self._plan()
        alone = set(plan.get("alone", ()))
        self.deferred = [i for i, nid in enumerate(collection) if nid in alone]
        if not self.deferred:
            super().schedule()
            return
        background, beside = set(plan.get("background", ())), set(plan.get("beside", ()))
        self.background = [i for i in self.deferred if collection[i] in background]
        self.beside = {i for i in self.deferred if collection[i] in beside}
        settled = set(plan.get("settled", ()))
        self.settled = {i for i in self.beside if collection[i] in settled}
        timed, early = set(plan.get("timed", ())), set(plan.get("early", ()))
        self.timed = [i for i in self.deferred if i in self.settled and collection[i] in timed]
        self.early = [i for i in self.deferred if i in self.beside and collection[i] in early]
        if self.background and self.beside and len(self.nodes) > 1:
            free = set(plan.get("free", ())) - alone
            self.free = [i for i, nid in enumerate(collection) if nid in free]
        held = alone | {collection[i] for i in self.free}
        self.collection = collection
        self.pending[:] = [i for i in range(len(collection)) if collection[i] not in held]
        if self.maxschedchunk is None:
            self.maxschedchunk = len(collection)
        chunk = max(2, min(len(self.pending) // len(self.nodes) // 4, self.maxschedchunk))
        for node in self.nodes:
            self._send_tests(node, chunk)
        self._maybe_run_alone()

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        if node.shutting_down:
            return
        if self.alone_sent and self.lane:
            self._top_up(node)
        elif self.pending or not (self.deferred or self.lane_open):
            super().check_schedule(node, duration)
        else:
            self._maybe_run_alone()

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        if self.lane and node is self.lane[1] and item_index in self.background_left:
            self.background_left.discard(item_index)
            if not self.background_left:
                self._background_ended(node)
        super().mark_test_complete(node, item_index, duration)
        if self.lane and node is self.lane[0] and self.timed:
            if item_index in self.beside and item_index not in self.settled:
                self.early_took.append(duration)
            self._feed_first(node)

    def remove_node(self, node: Any) -> str | None:
        crashed = super().remove_node(node)
        if self.lane and node is self.lane[1]:
            self.background_left.clear()
            self._background_ended(node)
        elif self.lane and node is self.lane[0]:
            state = Path(node.workerinput[ALONE_KEY]).parent
            lead_done_path(state, node.workerinput["testrunuid"]).touch()  # the second may go
        if self.lane and node is self.lane[0] and (self.lane_open or self.timed):
            # a replacement worker takes them
            self.pending.extend(self.timed + self.early + self.tail + self.rest)
            self.timed, self.early, self.tail = [], [], []
            self.rest, self.lane_open = [], False
        if self.deferred and self.node2pending:
            self._maybe_run_alone()
        return crashed

    def _maybe_run_alone(self) -> None:
        """Once the shared tests are all handed out: stop every worker but the lanes; when
        each lane holds at most the one test it cannot start without a next one, hand out the
        alone tests."""
        if self.pending or not self.deferred or self.alone_sent:
            return
        live = sorted(
            (n for n in self.node2pending if not n.shutting_down),
            key=lambda n: len(self.node2pending[n]),
        )
        if not live:
            return
        lanes = live[: 2 if self.background and self.beside and len(live) > 1 else 1]
        for n in live[len(lanes) :]:
            n.shutdown()
        if len(self.node2pending) > len(lanes) or any(len(self.node2pending[n]) > 1 for n in lanes):
            return  # the others are still finishing theirs
        self.alone_sent = True
        deferred, self.deferred = self.deferred, []
        if len(lanes) == 1:
            self.log(f"running {len(deferred)} tests alone on {lanes[0].gateway.id}")
            self._send(lanes[0], deferred + self.free, last=True)
            self.free = []
            return
        first, second = self.lane = (lanes[0], lanes[1])
        state = Path(first.workerinput[ALONE_KEY]).parent
        uid = first.workerinput["testrunuid"]
        lanes_path(state, uid).write_text(
            json.dumps([first.gateway.id, second.gateway.id]), encoding="utf-8"
        )
        beside = [i for i in deferred if i in self.beside and i not in self.background]
        others = [i for i in deferred if i not in self.beside and i not in self.background]
        # what was collected before the first test that may run beside the lane runs first,
        # while the second lane waits (lane_barrier); the rest once the lane has ended
        lead = [i for i in others if beside and i < beside[0]]
        self.rest = others[len(lead) :]
        # a test that needs its services past their start period goes before the tests that
        # restart them (the SLA-H1 test would otherwise wait up to a minute for a mailer)
        beside.sort(key=lambda i: i not in self.settled)
        # a settled test with a due moment waits for it while the early tests run (due.py)
        self.timed = [i for i in self.timed if i in beside]
        self.early = [i for i in beside if i in self.early and i not in self.settled]
        if not (self.timed and self.early):
            self.timed, self.early = [], []
        self.log(
            f"running {len(self.background)} background tests on {second.gateway.id}, beside "
            f"them {len(beside)} alone tests on {first.gateway.id}, then {len(self.rest)} more; "
            f"{len(self.free)} stack-free tests where a lane idles"
        )
        self.lane_open = bool(self.rest)
        self.background_left = set(self.background)
        # a worker runs a test once it knows the next: stack-free tests follow the background
        # ones, and the first test of the rest goes along to the first lane, where it waits
        # (its next is only sent once the second lane's background tests have ended)
        self._send(second, self.background, last=False)
        if self.timed:
            held = set(self.timed + self.early)
            ahead = [i for i in beside if i in self.settled and i not in held]
            self.tail = [i for i in beside if i not in held and i not in ahead] + self.rest[:1]
            # a worker starts a test once it holds the next: one early test after the others
            n = 1 if lead or ahead else 2
            start = lead + ahead + self.early[:n]
            del self.early[:n]
            self._send(first, start, last=False)
            self._fed_at = time.time()
            self.log(f"holding {len(self.timed)} timed tests back for their due moment")
        else:
            self._send(first, lead + beside + self.rest[:1], last=False)
        self.rest = self.rest[1:]
        for node in self.lane:
            self._top_up(node)

    def _feed_first(self, node: Any) -> None:
        """The first lane holds back its timed tests (due.py): when it is about to start the
        last test it holds, it gets the next early test, or the timed ones once their moment
        is near (or no early test is left), followed by everything else it had to run."""
        if len(self.node2pending.get(node, ())) > 1 or node.shutting_down:
            return
        moment = None
        if self.early:
            state = Path(node.workerinput[ALONE_KEY]).parent
            nodeid = self.collection[self.timed[0]]
            moment = due.read(state, node.workerinput["testrunuid"], nodeid, self._fed_at)
        est = due.estimate(self.early_took)
        if moment is not None and not due.send_now(moment, est, est, time.time()):
            self._fed_at = time.time()
            self._send(node, self.early[:1], last=False)
            del self.early[:1]
            return
        batch = self.timed + self.early + self.tail
        self.timed, self.early, self.tail = [], [], []
        self._send(node, batch, last=False)

    def _background_ended(self, node: Any) -> None:
        """The background tests are done (or their worker died): the rest may run."""
        first, _ = self.lane
        state = Path(first.workerinput[ALONE_KEY]).parent
        ready_path(state, first.workerinput["testrunuid"], node.gateway.id).touch()
        if self.timed and first in self.node2pending and not first.shutting_down:
            self._send(first, self.timed + self.early + self.tail, last=False)  # in their order
            self.timed, self.early, self.tail = [], [], []
        if self.lane_open and first in self.node2pending and not first.shutting_down:
            rest, self.rest, self.lane_open = self.rest, [], False
            self._send(first, rest, last=False)

    def _top_up(self, node: Any) -> None:
        """In the alone phase: a lane that will get no more alone tests, and holds at most the
        one it cannot start without a next, gets stack-free tests (a chunk: few as they run
        out, so that both lanes end together), or its shutdown when none are left."""
        if node.shutting_down or node not in self.node2pending:
            return
        first, _ = self.lane
        more_alone = (self.lane_open or bool(self.timed)) if node is first else False
        if more_alone or len(self.node2pending[node]) > 1:
            return
        pool = self.pending or self.free  # pending: what a crashed worker left
        if not pool:
            node.shutdown()
            return
        chunk = max(1, min(len(pool) // 4, 100))
        indices = pool[:chunk]
        del pool[:chunk]
        self._send(node, indices, last=False)

    def _send(self, node: Any, indices: list[int], *, last: bool) -> None:
        if indices:
            self.node2pending[node].extend(indices)
            node.send_runtest_some(indices)
        if last:
            node.shutdown()


def make_scheduler(config: pytest.Config, log: Any) -> AloneLastScheduling:
    return AloneLastScheduling(config, log)


# --- one stack, one evidence -------------------------------------------------------------------
def worker_output(config: pytest.Config, payload: dict) -> None:
    """On a worker at its session's end: what the controller merges into the run's evidence."""
    config.workeroutput[OUTPUT_KEY] = payload


def node_output(node: Any) -> dict | None:
    return (getattr(node, "workeroutput", None) or {}).get(OUTPUT_KEY)
