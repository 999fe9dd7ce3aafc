"""`pytest -n 2` (stackcheck.parallel): the tests that must be alone run after every shared test
has ended and never beside another, in collection order (recovery last); the evidence holds
every worker's outcomes, measurements and benchmarks; the bring-up lock lets one worker in at a
time. Real xdist workers in a pytester subprocess, no Docker."""

import itertools
import json
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.req("SC2")]

ROOT = Path(__file__).resolve().parents[3]

SPAN = """
import json, os, time
import pytest

LOG = os.environ["SPANS"]

def span(name, seconds):
    start = time.time()
    time.sleep(seconds)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    with open(LOG, "a") as f:
        f.write(json.dumps([name, worker, start, time.time()]) + "\\n")

"""

TESTS = (
    SPAN
    + """
@pytest.mark.parametrize("n", range(8))
@pytest.mark.infra
@pytest.mark.req("T1")
@pytest.mark.reads
def test_shared(n, sla):
    span(f"shared{n}", 0.3)
    sla.record("SLA-R1", 1.0 + n, how=f"shared {n}")

@pytest.mark.recovery
@pytest.mark.req("T8")
def test_recovery_kill():
    span("recovery", 0.2)

@pytest.mark.perf
@pytest.mark.req("SLA-P1")
def test_perf_benchmark(benchmark, sla):
    benchmark.pedantic(lambda: time.sleep(0.01), rounds=3, iterations=1)
    assert not benchmark.disabled
    span("perf", 0.2)
    sla.record("SLA-P1", benchmark.stats.stats.median, unit="s", how="benchmark")

@pytest.mark.e2e
@pytest.mark.alone
@pytest.mark.req("RW1")
def test_flood():
    span("flood", 0.2)

@pytest.mark.e2e
@pytest.mark.disrupts
@pytest.mark.req("SLA-R1")
def test_disrupts():
    span("disrupts", 0.2)

@pytest.mark.unit
def test_unit():
    span("unit", 0.1)
"""
)

ALONE = {"recovery", "perf", "flood", "disrupts"}


@pytest.fixture
def run_parallel(pytester, monkeypatch):
    pytester.makepyfile(test_x=TESTS)
    spans = pytester.path / "spans.jsonl"
    monkeypatch.setenv("SPANS", str(spans))
    monkeypatch.delenv("STACKCHECK_STACK", raising=False)
    result = pytester.runpytest_subprocess(
        "-n", "2",
        f"--requirements={ROOT / 'docs' / 'REQUIREMENTS.md'}",
        f"--sla-file={ROOT / 'fixtures' / 'sla.yml'}",
        f"--evidence-dir={pytester.path / 'evidence'}",
        "-p", "no:cacheprovider", "-o", "addopts=", "-rs",
    )  # fmt: skip
    lines = spans.read_text().splitlines() if spans.exists() else []
    return result, [json.loads(line) for line in lines], pytester.path / "evidence"


def test_alone_tests_run_last_and_alone(run_parallel):
    result, spans, _ = run_parallel
    result.assert_outcomes(passed=13)
    alone = [s for s in spans if s[0] in ALONE]
    shared = [s for s in spans if s[0] not in ALONE]
    assert {s[0] for s in alone} == ALONE and len(shared) == 9
    assert len({s[1] for s in shared}) == 2, "the shared tests were not spread over both workers"
    assert len({s[1] for s in alone}) == 1, "the alone tests ran on more than one worker"
    last_shared_end = max(s[3] for s in shared)
    assert all(s[2] >= last_shared_end for s in alone), (alone, last_shared_end)
    ordered = sorted(alone, key=lambda s: s[2])
    for a, b in itertools.pairwise(ordered):
        assert b[2] >= a[3], f"{a[0]} and {b[0]} overlapped"
    assert ordered[-1][0] == "recovery", "recovery tests run last"


def test_evidence_merges_every_worker(run_parallel):
    _, _, evidence = run_parallel
    (run_dir,) = (evidence / "runs").iterdir()
    data = json.loads((run_dir / "sla-evidence.json").read_text())
    reqs = {r["id"]: r for r in data["requirements"]}
    assert len(reqs["T1"]["tests"]) == 8 and set(reqs["T1"]["tests"].values()) == {"passed"}
    r1 = reqs["SLA-R1"]
    assert sorted(m["value"] for m in r1["measurements"]) == [1.0 + n for n in range(8)]
    assert r1["tests"] and reqs["T8"]["tests"] and reqs["RW1"]["tests"]
    p1 = reqs["SLA-P1"]["measurements"]
    assert len(p1) == 1 and p1[0]["how"] == "benchmark"
    assert data["run"]["context"]["xdist workers"] == "2"
    assert data["run"]["tests collected"] == 13
    bench = json.loads((run_dir / "benchmark.json").read_text())["benchmarks"]
    assert [b["stats"]["rounds"] for b in bench] == [3]


def test_bring_up_turn_admits_one_worker_at_a_time(tmp_path):
    from stackcheck import parallel

    class Cfg:
        rootpath = tmp_path
        workerinput: ClassVar = {"testrunuid": "run1"}

    inside, peak, firsts = [0], [0], []
    lock = threading.Lock()

    def worker():
        with parallel.bring_up_turn(Cfg()) as first:
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            firsts.append(first)
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 1 and sorted(firsts) == [False, False, True]


def test_a_failed_bring_up_leaves_the_turn_to_the_next(tmp_path):
    from stackcheck import parallel

    class Cfg:
        rootpath = tmp_path
        workerinput: ClassVar = {"testrunuid": "run2"}

    with pytest.raises(RuntimeError), parallel.bring_up_turn(Cfg()) as first:
        assert first
        raise RuntimeError("up --wait failed")
    with parallel.bring_up_turn(Cfg()) as first:
        assert first, "a failed bring-up must not make the next worker merely reuse"


def test_a_shared_resource_is_started_by_the_first_user_and_stopped_by_the_last(tmp_path):
    from stackcheck import parallel

    def cfg(worker: str):
        class Cfg:
            rootpath = tmp_path
            workerinput: ClassVar = {"testrunuid": "run3", "workerid": worker}

        return Cfg()

    events = []
    parallel.share(cfg("gw0"), "double", start=lambda: events.append("start"))
    parallel.share(cfg("gw1"), "double", start=lambda: events.append("start"))
    parallel.unshare(cfg("gw0"), "double", stop=lambda: events.append("stop"))
    assert events == ["start"], "stopped while gw1 still used it"
    parallel.unshare(cfg("gw1"), "double", stop=lambda: events.append("stop"))
    parallel.share(cfg("gw0"), "double", start=lambda: events.append("start"))
    assert events == ["start", "stop", "start"]


LANES = (
    SPAN
    + """
@pytest.fixture(autouse=True)
def _stackcheck_needs():
    '''no stack here: the needs markers only declare what a test touches'''

@pytest.mark.parametrize("n", range(6))
@pytest.mark.infra
@pytest.mark.req("T1")
@pytest.mark.reads
def test_shared(n):
    span(f"shared{n}", 0.3)

@pytest.mark.e2e
@pytest.mark.alone
@pytest.mark.whole_stack
@pytest.mark.req("SC1")
@pytest.mark.needs("mailer")
def test_lead_whole_stack():
    span("lead", 0.5)

@pytest.mark.recovery
@pytest.mark.req("M3")
@pytest.mark.disrupts("exporter")
@pytest.mark.background(observes=("prometheus",))
def test_background():
    span("background", 3.0)

@pytest.mark.perf
@pytest.mark.req("SLA-P1")
@pytest.mark.needs("mailer")
def test_beside_perf():
    span("beside-perf", 0.3)

@pytest.mark.recovery
@pytest.mark.req("SLA-H1")
@pytest.mark.disrupts("redis")
@pytest.mark.needs("redis")
@pytest.mark.settled
def test_beside_redis():
    span("beside-redis", 0.3)

@pytest.mark.perf
@pytest.mark.req("SLA-P1")
@pytest.mark.needs("exporter")
def test_after_needs_exporter():
    span("after-needs-exporter", 0.2)

@pytest.mark.recovery
@pytest.mark.req("SLA-R1")
@pytest.mark.disrupts("prometheus")
@pytest.mark.needs("prometheus")
def test_after_disrupts_observed():
    span("after-disrupts-observed", 0.2)

@pytest.mark.e2e
@pytest.mark.alone
@pytest.mark.whole_stack
@pytest.mark.req("RW1")
@pytest.mark.needs("mailer")
def test_after_whole_stack():
    span("after-whole-stack", 0.2)

@pytest.mark.e2e
@pytest.mark.alone
@pytest.mark.req("RW1")
def test_after_no_needs():
    span("after-no-needs", 0.2)

@pytest.mark.recovery
@pytest.mark.req("T8")
def test_after_recovery_undeclared():
    span("after-recovery", 0.2)

@pytest.mark.parametrize("n", range(12))
@pytest.mark.unit
def test_free(n):
    span(f"free{n}", 0.4)
    assert os.getpriority(os.PRIO_PROCESS, 0) == 19, "a stack-free test at full CPU priority"
    if os.path.exists("/proc/self/autogroup"):
        with open("/proc/self/autogroup") as f:
            assert f.read().split()[-1] == "19", "its autogroup weighs as much as a container"
"""
)


def test_a_background_test_runs_beside_the_alone_tests_that_leave_its_services_alone(
    pytester, monkeypatch
):
    """The alert test's lane: while it waits, the other worker runs the alone tests that declare
    they neither touch nor need what it holds down or observes; the undeclared, those that need
    its victim, disrupt what it observes or look at the whole stack, wait until it has ended,
    except those collected before the first that may run beside it: they run first, alone.
    Of those beside it, the `settled` ones go first (before the others restart services).
    No alone test overlaps a shared one, and the first lane's tests never overlap each other.
    The stack-free tests fill the lanes: on the second after its background test, on the first
    after its last alone test, never in the shared phase, at the lowest CPU priority."""
    pytester.makepyfile(test_lanes=LANES)
    spans_file = pytester.path / "spans.jsonl"
    monkeypatch.setenv("SPANS", str(spans_file))
    monkeypatch.delenv("STACKCHECK_STACK", raising=False)
    result = pytester.runpytest_subprocess(
        "-n", "2",
        f"--requirements={ROOT / 'docs' / 'REQUIREMENTS.md'}",
        f"--sla-file={ROOT / 'fixtures' / 'sla.yml'}",
        f"--evidence-dir={pytester.path / 'evidence'}",
        "-p", "no:cacheprovider", "-o", "addopts=", "-rs",
    )  # fmt: skip
    result.assert_outcomes(passed=27)
    spans = {s[0]: s for s in map(json.loads, spans_file.read_text().splitlines())}
    bg = spans.pop("background")
    free = [spans.pop(n) for n in [n for n in spans if n.startswith("free")]]
    shared = [s for n, s in spans.items() if n.startswith("shared")]
    alone = [s for n, s in spans.items() if not n.startswith("shared")]
    overlaps = [
        (a[0], sh[0]) for a in [*alone, bg] for sh in shared if a[2] < sh[3] and sh[2] < a[3]
    ]
    assert not overlaps, f"alone tests beside shared ones: {overlaps}"
    assert all(s[1] != bg[1] for s in alone), "the background test shares its lane"
    lead = spans["lead"]
    assert lead[3] <= bg[2], "the leading test did not end before the background test began"
    assert all(s[2] >= lead[3] for n, s in spans.items() if not n.startswith(("shared", "lead")))
    for name in ("beside-perf", "beside-redis"):
        assert spans[name][2] < bg[3], f"{name} did not run beside the background test"
    # a `settled` test goes first of those beside the lane, though collected after beside-perf
    assert spans["beside-redis"][3] <= spans["beside-perf"][2], "the settled test was not first"
    for name in (n for n in spans if n.startswith("after-")):
        assert spans[name][2] >= bg[3], f"{name} ran while the background test held its services"
    ordered = sorted(alone, key=lambda s: s[2])
    for a, b in itertools.pairwise(ordered):
        assert b[2] >= a[3], f"{a[0]} and {b[0]} overlapped"
    assert ordered[-1][0] == "after-recovery", "recovery tests run last"
    last_shared = max(s[3] for s in shared)
    assert all(f[2] >= last_shared for f in free), "a stack-free test ran in the shared phase"
    on_second = [f for f in free if f[1] == bg[1]]
    on_first = [f for f in free if f[1] != bg[1]]
    assert on_second, "the second lane idled after its background test"
    assert all(f[2] >= bg[3] for f in on_second), "a stack-free test held up the background"
    last_alone = max(s[3] for s in alone)
    assert all(f[2] >= last_alone for f in on_first), "a stack-free test delayed an alone one"


TIMED = (
    SPAN
    + """
TICK = os.environ["TICK"]

@pytest.fixture(autouse=True)
def _stackcheck_needs():
    '''no stack here: the needs markers only declare what a test touches'''

def due_in(stack):
    '''the held test is best started at the moment the lead test wrote, every 30 s'''
    if not os.path.exists(TICK):
        return None
    with open(TICK) as f:
        return max(0.0, float(f.read()) - time.time()), 30.0

@pytest.mark.parametrize("n", range(4))
@pytest.mark.infra
@pytest.mark.req("T1")
@pytest.mark.reads
def test_shared(n):
    span(f"shared{n}", 0.2)

@pytest.mark.e2e
@pytest.mark.alone
@pytest.mark.whole_stack
@pytest.mark.req("SC1")
@pytest.mark.needs("mailer")
def test_lead():
    span("lead", 0.2)
    with open(TICK, "w") as f:
        f.write(str(time.time() + 6.0))

@pytest.mark.recovery
@pytest.mark.req("M3")
@pytest.mark.disrupts("exporter")
@pytest.mark.background(observes=("prometheus",))
def test_background():
    span("background", 9.0)

@pytest.mark.recovery
@pytest.mark.req("SLA-H1")
@pytest.mark.disrupts("redis")
@pytest.mark.needs("redis")
@pytest.mark.settled(due=due_in)
def test_timed():
    span("timed", 0.3)

@pytest.mark.parametrize("n", range(14))
@pytest.mark.perf
@pytest.mark.req("SLA-P1")
@pytest.mark.needs("mailer")
def test_early(n):
    span(f"early{n}", 0.5)

@pytest.mark.recovery
@pytest.mark.req("SLA-R1")
@pytest.mark.disrupts("redis")
@pytest.mark.needs("redis")
def test_restarts_redis():
    span("restarts-redis", 0.2)
"""
)


def test_a_timed_test_waits_for_its_moment_while_the_tests_that_leave_it_alone_run(
    pytester, monkeypatch
):
    """SLA-H1's wait on the mailers' next probe: a `settled(due=...)` test is held back while
    the alone tests that leave its services alone run one at a time, and is sent so that it
    starts shortly before its moment, neither later (it would wait a whole period) nor much
    earlier (it would wait with Redis down and nothing else running). A test that disrupts
    what it needs still runs after it; every early test runs, before or after it."""
    pytester.makepyfile(test_timed=TIMED)
    spans_file, tick = pytester.path / "spans.jsonl", pytester.path / "tick"
    monkeypatch.setenv("SPANS", str(spans_file))
    monkeypatch.setenv("TICK", str(tick))
    monkeypatch.delenv("STACKCHECK_STACK", raising=False)
    result = pytester.runpytest_subprocess(
        "-n", "2",
        f"--requirements={ROOT / 'docs' / 'REQUIREMENTS.md'}",
        f"--sla-file={ROOT / 'fixtures' / 'sla.yml'}",
        f"--evidence-dir={pytester.path / 'evidence'}",
        "-p", "no:cacheprovider", "-o", "addopts=", "-rs",
    )  # fmt: skip
    result.assert_outcomes(passed=22)
    spans = {s[0]: s for s in map(json.loads, spans_file.read_text().splitlines())}
    moment, timed = float(tick.read_text()), spans["timed"]
    early = [s for n, s in spans.items() if n.startswith("early")]
    assert len(early) == 14
    assert 0 <= moment - timed[2] <= 2.0, f"started {moment - timed[2]:.2f} s before its moment"
    assert any(s[3] <= timed[2] for s in early), "no early test ran while it waited"
    assert any(s[2] >= timed[3] for s in early), "every early test ran before it: none left"
    assert spans["restarts-redis"][2] >= timed[3], "a test restarting its service went first"
    lane = sorted((s for s in spans.values() if s[1] == timed[1]), key=lambda s: s[2])
    for a, b in itertools.pairwise(lane):
        assert b[2] >= a[3], f"{a[0]} and {b[0]} overlapped"


def test_holds_are_shared_through_a_file_and_released_however_the_block_ends(tmp_path):
    from stackcheck.holds import Holds

    path = tmp_path / "held.json"
    holder, other = Holds(path), Holds(path)  # two workers' views of one run
    with pytest.raises(RuntimeError), holder.hold(("exporter",), by="test_alert"):
        assert other.held() == {"exporter": "test_alert"}
        raise RuntimeError("the test failed while holding")
    assert other.held() == {}
