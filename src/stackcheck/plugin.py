"""The stackcheck pytest plugin: stack lifecycle, requirement traceability, SLA evidence, and
service logs on failure.

Registered through the `pytest11` entry point, so any pytest run in this environment has it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stackcheck import due, parallel
from stackcheck.evidence.catalogue import Catalogue
from stackcheck.evidence.recorder import Evidence
from stackcheck.evidence.thresholds import Threshold, ThresholdError
from stackcheck.evidence.thresholds import load as load_thresholds
from stackcheck.holds import Holds
from stackcheck.markers import (
    SUITES,
    background,
    impact,
    may_run_before,
    may_run_beside,
    stack_free,
)
from stackcheck.mode import Mode, ModeError, StackConfig, resolve, select_mode
from stackcheck.stack import Stack, StackError

MARKERS = {
    "infra": "one-line infrastructure checks against the running stack (fast, non-destructive)",
    "e2e": "end-to-end mail flows through the running stack",
    "perf": "benchmarks and SLA measurements",
    "recovery": "destructive recovery tests (down/up, kills, full disks); run last",
    "security": "hardening and security checks",
    "unit": "fast tests of src/, no Docker",
    "component": "the mailer's parts against real PostgreSQL, Redis and clamd run as local "
    "processes (tests/component), no Docker",
    "req(*ids)": "requirement IDs of docs/REQUIREMENTS.md that this test proves",
    "needs(*services)": "services the test needs; skipped, naming them, if the stack lacks them",
    # what a test does to the stack it runs against (the most impactful marker wins; an
    # acceptance test without one counts as `writes`, a `recovery` test as `disrupts`)
    "reads": "only observes the stack (queries, logs, static files): runs in external mode",
    "writes": "writes test data (mail, rows, probe containers, files): in external mode only "
    "with --allow-writes",
    "disrupts(*services)": "stops, kills, restarts or reconfigures services (those named; none "
    "named: any): never in external mode",
    "background(observes=())": "a disrupting test that mostly waits on a window the contract "
    "sets: under `pytest -n N` it runs on a second worker beside the alone tests that neither "
    "disrupt what it disrupts or observes nor need what it disrupts",
    "settled(due=None)": "needs its services past their health checks' start period (in it, "
    "failed checks do not count): under `pytest -n N` it runs first of the tests beside the "
    "background lane, before the others restart those services; with `due` (a function of the "
    "stack: seconds until it is best started, and the period), the tests that leave its "
    "services alone run until that moment is near",
    "whole_stack": "observes every service (lifecycle events, every container's CPU): never "
    "runs beside a background test",
    "alone": "loads the stack enough to disturb other tests' timings: under `pytest -n N` it "
    "runs after the shared tests, alone (as do disrupts and perf)",
}
IMPACTS = ("reads", "writes", "disrupts")

evidence_key = pytest.StashKey[Evidence]()
# (background, beside, free) node IDs: see stackcheck.parallel
lane_plan_key = pytest.StashKey[tuple[set[str], set[str], set[str]]]()
stack_key = pytest.StashKey[Stack]()
any_req_key = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("stackcheck", "stack under test and SLA evidence")
    g.addoption(
        "--stack",
        dest="stackcheck_mode",
        default=None,
        metavar="MODE",
        help="reuse (default: keep a running stack), fresh (down -v first), external "
        "(observe only) or swarm (the stack `./run deploy swarm` deployed); also "
        "$STACKCHECK_STACK",
    )
    g.addoption(
        "--stack-teardown",
        dest="stackcheck_teardown",
        action="store_true",
        help="`docker compose down` after the run (also $STACKCHECK_TEARDOWN=1)",
    )
    g.addoption(
        "--stack-dir",
        dest="stackcheck_stack_dir",
        default="stack",
        help="folder of compose.yml (relative to the rootdir)",
    )
    g.addoption(
        "--requirements",
        dest="stackcheck_requirements",
        default="docs/REQUIREMENTS.md",
        help="the requirement catalogue",
    )
    g.addoption(
        "--sla-file", dest="stackcheck_sla", default="fixtures/sla.yml", help="SLA thresholds"
    )
    g.addoption(
        "--evidence-dir",
        dest="stackcheck_evidence_dir",
        default="reports",
        help="where sla-evidence.json and .html are written",
    )
    g.addoption(
        "--allow-writes",
        dest="stackcheck_allow_writes",
        action="store_true",
        help="with --stack=external, also run the tests that write test data (mail to the "
        "profile addresses, rows, probe containers); tests that disrupt never run there",
    )
    g.addoption(
        "--mail-corpus",
        dest="stackcheck_mail_corpus",
        default=None,
        metavar="DIR",
        help="a folder of real mails (one per file) to replay through the stack (RW1); also "
        "$STACKCHECK_MAIL_CORPUS; default ../shared/corpus/realmail beside the checkout",
    )


def _path(config: pytest.Config, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else config.rootpath / p


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    from stackcheck import swarm_plugin  # which tests run on Swarm, and tests/swarm elsewhere

    if not config.pluginmanager.is_registered(swarm_plugin):
        config.pluginmanager.register(swarm_plugin, "stackcheck-swarm")
    try:
        catalogue = Catalogue.load(_path(config, config.option.stackcheck_requirements))
        thresholds = load_thresholds(_path(config, config.option.stackcheck_sla), catalogue)
    except (OSError, ValueError, ThresholdError) as exc:
        raise pytest.UsageError(f"stackcheck: {exc}") from exc
    config.stash[evidence_key] = Evidence(catalogue, thresholds)
    config.stash[any_req_key] = False


def req_ids(item: pytest.Item) -> list[str]:
    return [rid for m in item.iter_markers("req") for rid in m.args]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Refuse unknown requirement IDs and untraced acceptance tests; run recovery tests last."""
    known = set(config.stash[evidence_key].entries)
    catalogue = config.option.stackcheck_requirements
    problems = []
    for item in items:
        ids = req_ids(item)
        if any(m.name == "req" and not m.args for m in item.iter_markers("req")):
            problems.append(f"{item.nodeid}: @pytest.mark.req() needs at least one ID")
        unknown = [rid for rid in ids if rid not in known]
        if unknown:
            names = ", ".join(map(repr, unknown))
            problems.append(f"{item.nodeid}: unknown requirement ID(s) {names}; see {catalogue}")
        if not ids and any(item.get_closest_marker(s) for s in SUITES):
            problems.append(f"{item.nodeid}: acceptance test without @pytest.mark.req(...)")
    if problems:
        raise pytest.UsageError("requirement traceability:\n  " + "\n  ".join(problems))
    _hands_off(config, items)
    items.sort(key=lambda it: it.get_closest_marker("recovery") is not None)
    if parallel.is_worker(config):
        alone = [it for it in items if parallel.must_run_alone(it, impact(it))]
        try:
            lanes = [it for it in alone if background(it) is not None]
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from exc
        beside = [it for it in alone if lanes and all(may_run_beside(it, b) for b in lanes)]
        # with two lanes, the tests of our own code fill them instead of the shared phase
        free = [it for it in items if beside and stack_free(it)]
        config.stash[lane_plan_key] = (
            {it.nodeid for it in lanes},
            {it.nodeid for it in beside},
            {it.nodeid for it in free},
        )
        # settled tests with a due moment wait for it while those that leave them alone run
        timed = [it for it in beside if due.due_of(it)]
        early = [
            it
            for it in beside
            if timed
            and it.get_closest_marker("settled") is None
            and all(may_run_before(it, t) for t in timed)
        ]
        due.remember(
            config, {it.nodeid: due.due_of(it) for it in timed}, frozenset(i.nodeid for i in alone)
        )
        parallel.write_alone(
            config,
            [it.nodeid for it in alone],
            background=[it.nodeid for it in lanes],
            beside=[it.nodeid for it in beside],
            free=[it.nodeid for it in free],
            settled=[it.nodeid for it in beside if it.get_closest_marker("settled")],
            timed=[it.nodeid for it in timed],
            early=[it.nodeid for it in early],
        )


# --- pytest -n N (stackcheck.parallel) ----------------------------------------------------------
@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    parallel.configure_node(node.config, node)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Shared tests load-balanced, the alone ones last on one worker; other --dist modes
    (loadfile, each, ...) are xdist's own."""
    if config.getvalue("dist") != "load":
        return None
    return parallel.make_scheduler(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """A worker's records into the controller's evidence and run state."""
    out = parallel.node_output(node)
    if not out:
        return
    config = node.config
    config.stash[evidence_key].absorb(out["evidence"])
    if out["any_req"]:
        config.stash[any_req_key] = True
    state = config.stash[run_key]
    state["benchmarks"] += out["benchmarks"]
    state["workers"] += 1
    for key in ("suites", "collected", "deselected"):
        state[key] = out["state"][key]  # every worker collects the same


def _hands_off(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A stack that is not ours (--stack=external) is only observed: what writes test data
    runs only with --allow-writes, what disrupts never. Decided from the markers, before any
    fixture could touch the stack."""
    try:
        mode = select_mode(config.option.stackcheck_mode, os.environ)
    except ModeError:
        return  # reported by the stack fixture, with its message
    if mode is not Mode.EXTERNAL:
        return
    allow_writes = config.option.stackcheck_allow_writes
    for item in items:
        if not any(item.get_closest_marker(s) for s in SUITES):
            continue
        kind = impact(item)
        if kind == "disrupts":
            item.add_marker(
                pytest.mark.skip(reason="disrupts the stack: never in external mode (not ours)")
            )
        elif kind == "writes" and not allow_writes:
            item.add_marker(
                pytest.mark.skip(
                    reason="writes test data into a stack that is not ours: --allow-writes runs it"
                )
            )


# --- the stack --------------------------------------------------------------------------
def _progress(config: pytest.Config):
    """Progress lines that reach the terminal even while pytest captures output."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")

    def say(msg: str) -> None:
        if tr is None:
            return
        if capman is None:
            tr.write_line(f"[stackcheck] {msg}")
            return
        with capman.global_and_fixture_disabled():
            tr.write_line(f"[stackcheck] {msg}")

    return say


def _stack_config(config: pytest.Config) -> StackConfig:
    """The options, the environment and stack/.env as one StackConfig (mode.resolve)."""
    opt = config.option
    return resolve(
        option_mode=opt.stackcheck_mode,
        option_teardown=opt.stackcheck_teardown,
        env=os.environ,
        stack_dir=_path(config, opt.stackcheck_stack_dir),
    )


@pytest.fixture(scope="session")
def stack(pytestconfig: pytest.Config) -> Stack:
    """The stack under test, healthy, as the --stack mode says."""
    try:
        cfg = _stack_config(pytestconfig)
    except ModeError as exc:
        raise pytest.UsageError(str(exc)) from exc
    if cfg.mode is not Mode.EXTERNAL and not (cfg.stack_dir / ".env").is_file():
        pytest.fail(
            f"{cfg.stack_dir / '.env'} is missing: run `./run setup` first (it chooses "
            "online or offline images and creates the secrets)",
            pytrace=False,
        )
    ev = pytestconfig.stash[evidence_key]
    cold = ev.thresholds.get("SLA-R3")
    deadline = cold.value if cold and cold.value else 900.0
    # under `pytest -n N` the workers take turns: the first brings the stack up (fresh if asked),
    # the others reuse it
    with parallel.bring_up_turn(pytestconfig) as first:
        if not first and cfg.mode is Mode.FRESH:
            cfg = dataclasses.replace(cfg, mode=Mode.REUSE)
        st = Stack(
            cfg,
            progress=_progress(pytestconfig),
            holds=Holds(parallel.holds_path(pytestconfig)),
        )
        pytestconfig.stash[stack_key] = st
        try:
            took = st.ensure(timeout=deadline)
        except StackError as exc:
            pytest.fail(str(exc), pytrace=False)
    ev.context.update(
        {
            "stack mode": cfg.mode.value,
            "platform": st.platform(),
            "compose project": cfg.project,
            "images": "offline stand-ins (Debian)" if cfg.offline else "official, pinned",
            "compose files": ", ".join(cfg.files),
            "services": ", ".join(st.defined),
            "stack up --wait (s)": f"{took:.1f}" if took else "already healthy (reused)",
            "docker engine": st.docker.version().get("Version", "?"),
        }
    )
    if not first and not took:  # another worker's bring-up is the run's (merged by the controller)
        del ev.context["stack up --wait (s)"]
    yield st
    if cfg.teardown and not parallel.is_worker(pytestconfig):  # under xdist: the controller's
        st.progress("tearing the stack down (--stack-teardown)")
        st.down()


@pytest.fixture(autouse=True)
def _stackcheck_needs(request: pytest.FixtureRequest) -> None:
    """Skip, naming the service, when the stack does not have a service the test needs.

    Only absence skips: a service the stack defines but that is down makes the test fail.
    """
    wanted = [s for m in request.node.iter_markers("needs") for s in m.args]
    if not wanted:
        return
    st: Stack = request.getfixturevalue("stack")
    missing = [s for s in wanted if not st.has(s)]
    if missing:
        how = "offline mode" if st.config.offline else "this stack"
        pytest.skip(f"needs service {', '.join(missing)}, which {how} does not run")
    for s in wanted:
        st.touched.add(s)


class SLA:
    """What a test uses to record measured values against the thresholds of fixtures/sla.yml."""

    def __init__(self, evidence: Evidence, nodeid: str):
        self._ev = evidence
        self._nodeid = nodeid

    def threshold(self, rid: str) -> Threshold:
        try:
            return self._ev.thresholds[rid]
        except KeyError:
            raise KeyError(f"fixtures/sla.yml has no target for {rid}") from None

    def record(
        self, rid: str, value: float | str, *, how: str, unit: str = "", verdict: str | None = None
    ) -> None:
        """Record a measurement for the evidence report (judged if numeric and targeted, unless
        `verdict` says otherwise: "provisional" for a window shorter than the target's)."""
        self._ev.measure(rid, value, unit=unit, how=how, test=self._nodeid, verdict=verdict)

    def samples(
        self, rid: str, values, *, unit: str = "", how: str = "", kind: str | None = None
    ) -> None:
        """Record the raw samples behind a measurement for the report's plots: a list of values
        (a distribution, e.g. per-mail latencies), kind="timeline" for seconds since the start
        at which each event happened (e.g. each mail of a burst stored), or a dict label ->
        value (e.g. recovery seconds per service). Samples judge nothing: record or check the
        summary value as well."""
        self._ev.samples(rid, values, unit=unit, how=how, test=self._nodeid, kind=kind)

    def check(self, rid: str, value: float, *, how: str) -> None:
        """Record a measurement and fail the test if it misses the target."""
        th = self.threshold(rid)
        self.record(rid, value, how=how)
        assert th.met_by(value), (
            f"{rid}: measured {value:g} {th.unit}, target {th.describe()} ({th.target})"
        )


@pytest.fixture
def sla(request: pytest.FixtureRequest) -> SLA:
    return SLA(request.config.stash[evidence_key], request.node.nodeid)


# --- reporting ---------------------------------------------------------------------------
def pytest_runtest_setup(item: pytest.Item) -> None:
    background, beside, free = item.config.stash.get(lane_plan_key, (set(), set(), set()))
    if item.nodeid in free:
        parallel.free_test_started(item.config)
    else:
        parallel.lane_barrier(item.config, beside=item.nodeid in beside)
    if item.nodeid in background:
        parallel.lane_started(item.config)
    st = item.config.stash.get(stack_key, None)
    if st is not None:
        st.touched = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    yield
    parallel.publish_due(item.config, item.nodeid, item.config.stash.get(stack_key, None))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    ev = item.config.stash[evidence_key]
    ids = req_ids(item)
    if ids and (call.when == "call" or report.outcome != "passed"):
        item.config.stash[any_req_key] = True
        for rid in ids:
            ev.outcome(rid, item.nodeid, report.outcome)
    if report.failed:
        _attach_logs(item, report)


def _attach_logs(item: pytest.Item, report: pytest.TestReport) -> None:
    """Attach the recent logs of every service the failing test touched (users of such tools
    ask for this most)."""
    st = item.config.stash.get(stack_key, None)
    if st is None or not st.touched:
        return
    try:
        import pytest_html

        extras = getattr(report, "extras", [])
    except ImportError:  # pragma: no cover - pytest-html is a dependency
        pytest_html, extras = None, []
    for name in sorted(st.touched):
        try:
            text = st.service(name).logs(tail=200)
        except Exception as exc:  # the failure itself may be that the container is gone
            text = f"(no logs: {exc})"
        report.sections.append((f"service logs: {name} (last 200 lines)", text))
        if pytest_html is not None:
            extras.append(pytest_html.extras.text(text, name=f"logs: {name}"))
    report.extras = extras


run_key = pytest.StashKey[dict]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[run_key] = {
        "t0": time.monotonic(),
        "started": datetime.now(UTC),
        "wall0": time.time(),
        "deselected": 0,
        "suites": [],
        "collected": 0,
        "benchmarks": [],  # pytest-benchmark results as dicts (under xdist, from the workers)
        "workers": 0,
    }
    bs = getattr(session.config, "_benchmarksession", None)
    if parallel.is_worker(session.config) and bs is not None and bs.xdist_warning:
        # pytest-benchmark switches itself off under xdist because parallel timings are
        # unreliable; our scheduler runs every perf test alone, so its timings are not parallel
        bs.disabled = bs.xdist_warning = False


def pytest_deselected(items) -> None:
    if items:
        config = items[0].config
        state = config.stash.get(run_key, None)
        if state is not None:
            state["deselected"] += len(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    state = session.config.stash.get(run_key, None)
    if state is not None:
        found = {s for it in session.items for s in SUITES if it.get_closest_marker(s)}
        state["suites"] = [s for s in SUITES if s in found]
        state["collected"] = len(session.items)


def _partial_reasons(session: pytest.Session, exitstatus: int, state: dict) -> list[str]:
    """Why this run is not a complete one (history.py: what a complete run is); [] if it is."""
    config = session.config
    why = []
    missing = [s for s in SUITES if s not in state["suites"]]
    if missing:
        why.append(f"did not collect the suites {', '.join(missing)}")
    if state["deselected"]:
        why.append(f"deselected {state['deselected']} tests")
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0])
        if "::" in arg or path.is_file():
            why.append(f"selected {arg}")
    if exitstatus == pytest.ExitCode.INTERRUPTED or session.shouldstop or session.shouldfail:
        why.append("stopped early")
    return why


def _benchmark_dicts(config: pytest.Config) -> list[dict]:
    """pytest-benchmark's results of this process, every round included."""
    bs = getattr(config, "_benchmarksession", None)
    done = [b for b in getattr(bs, "benchmarks", None) or [] if b and b.stats.rounds]
    return json.loads(json.dumps([b.as_dict(include_data=True) for b in done], default=str))


def _benchmarks(full: list[dict], run_dir: Path) -> list[dict]:
    """pytest-benchmark's results of this run: every round to run_dir/benchmark.json, a
    summary per benchmark (seconds) for the evidence, where history compares it with the
    previous run."""
    if not full:
        return []
    (run_dir / "benchmark.json").write_text(
        json.dumps({"benchmarks": full}, indent=2, default=str) + "\n", encoding="utf-8"
    )
    out = []
    for b in full:
        st = b["stats"]
        data = sorted(st.get("data") or [])
        out.append(
            {
                "name": b["fullname"],
                "rounds": st["rounds"],
                "median": st["median"],
                "mean": st["mean"],
                "min": st["min"],
                "max": st["max"],
                "stddev": st["stddev"],
                "p95": (
                    statistics.quantiles(data, n=20, method="inclusive")[-1]
                    if len(data) > 1
                    else (data or [None])[0]
                ),
                "mode": b["extra_info"].get("mode", ""),  # the test says (pedantic)
            }
        )
    return out


def _report_path(config: pytest.Config, opt: str) -> Path | None:
    value = getattr(config.option, opt, None)
    return Path(config.invocation_params.dir, value) if value else None


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):
    """After junitxml and pytest-html have written their files (this wrapper's code after the
    yield runs once every plain implementation has): keep the run in reports/runs/, append it
    to the history and rewrite the top-level evidence (stackcheck.evidence.history)."""
    yield
    config = session.config
    state = config.stash[run_key]
    if parallel.is_worker(config):  # the controller merges and writes (pytest_testnodedown)
        parallel.worker_output(
            config,
            {
                "evidence": config.stash[evidence_key].export(),
                "any_req": config.stash.get(any_req_key, False),
                "benchmarks": _benchmark_dicts(config),
                "state": {k: state[k] for k in ("suites", "collected", "deselected")},
            },
        )
        return
    if parallel.is_controller(config):
        _controller_teardown(config)
    if not config.stash.get(any_req_key, False):
        return  # a run that proved no requirement has no evidence to keep
    from stackcheck.evidence import history, report

    directory = _path(config, config.option.stackcheck_evidence_dir)
    data, run_dir = _run_record(session, exitstatus, directory)
    copied = history.copy_artifacts(
        run_dir,
        [_report_path(config, "xmlpath"), _report_path(config, "htmlpath")],
        since=state["wall0"],
    )
    benches = _benchmarks(state["benchmarks"] or _benchmark_dicts(config), run_dir)
    if benches:
        data["benchmarks"] = benches
        copied.append("benchmark.json")
    data["run"]["artifacts"] = copied
    merged = history.publish(directory, data, run_dir=run_dir, render=report.render)
    if config.option.stackcheck_evidence_dir == "reports":  # the operator's, not a test's
        # after the evidence is written, so the picture is of this run's page
        config.stash[screenshot_key] = report.screenshot(
            directory / history.EVIDENCE_HTML, directory / "sla-evidence.png"
        )
    config.stash[evidence_paths_key] = (
        directory / history.EVIDENCE_JSON,
        directory / history.EVIDENCE_HTML,
        run_dir,
    )
    config.stash[merged_key] = merged


def _run_record(session: pytest.Session, exitstatus: int, directory: Path) -> tuple[dict, Path]:
    """This run's evidence with its context and `run` block, and the folder it is kept in."""
    from stackcheck.evidence import history

    config = session.config
    state = config.stash[run_key]
    ev = config.stash[evidence_key]
    ev.context.setdefault("python", platform.python_version())
    ev.context["run duration (s)"] = f"{time.monotonic() - state['t0']:.1f}"
    ev.context["pytest exit status"] = str(int(exitstatus))
    if state["workers"]:
        ev.context["xdist workers"] = str(state["workers"])
    commit, dirty = history.git_commit(config.rootpath)
    why = _partial_reasons(session, exitstatus, state)
    selection = " ".join(config.invocation_params.args) or "(testpaths)"
    ev.context.update(
        {
            "commit": commit + (" (uncommitted changes)" if dirty else ""),
            "host": platform.node(),
            "selection": selection,
            "complete": "yes" if not why else "no: " + "; ".join(why),
        }
    )
    run_dir = history.new_run_dir(directory, state["started"], commit)
    data = ev.as_dict()
    data["run"] = {
        "id": run_dir.name,
        "started": history.iso(state["started"]),
        "finished": history.iso(datetime.now(UTC)),
        "complete": not why,
        "partial because": why,
        "commit": commit,
        "dirty": dirty,
        "suites": state["suites"],
        "tests collected": state["collected"],
        "exit status": int(exitstatus),
        "summary": data["summary"],
        "context": dict(ev.context),
    }
    return data, run_dir


def _controller_teardown(config: pytest.Config) -> None:
    """--stack-teardown under xdist: once, after every worker has finished."""
    try:
        cfg = _stack_config(config)
    except ModeError:
        return
    if cfg.teardown:
        st = Stack(cfg, progress=_progress(config))
        st.progress("tearing the stack down (--stack-teardown)")
        st.down()


evidence_paths_key = pytest.StashKey[tuple[Path, Path, Path]]()
screenshot_key = pytest.StashKey[str]()
merged_key = pytest.StashKey[dict]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    paths = config.stash.get(evidence_paths_key, None)
    if not paths:
        return
    summary = config.stash[evidence_key].summary()
    terminalreporter.write_sep("-", "SLA evidence")
    terminalreporter.write_line(
        "this run: " + ", ".join(f"{n} {k}" for k, v in summary.items() for n in [v])
    )
    merged = config.stash[merged_key]
    base = merged.get("complete_run")
    terminalreporter.write_line(
        "report:   "
        + ", ".join(f"{v} {k}" for k, v in merged["summary"].items())
        + (
            f" (complete run {base} + {len(merged['runs']) - 1} newer partial)"
            if base
            else f" (no complete run yet: {len(merged['runs'])} partial runs merged)"
        )
    )
    for p in paths:
        terminalreporter.write_line(f"  {p}")
    shot = config.stash.get(screenshot_key, None)
    if shot:
        terminalreporter.write_line(f"  {shot}")
