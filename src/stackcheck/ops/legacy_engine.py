"""The stack on an already-running older Docker engine (issue 12), proven for real.

Docker Engine 25 brought health-check `start_interval`; Compose refuses to create a container
that sets it on an older engine. Setup (`./run`) therefore adds `stack/compose.legacy-engine.yml`
to COMPOSE_FILE on engines before 25. This module checks that on a real old engine, Debian 12's
own `docker.io` (Engine 20.10):

1. an engine container (the project's local `debian:bookworm-slim` + Debian's docker.io,
   privileged, /var/lib/docker on a volume so overlay2 works) is started beside the host's;
2. the stack's images are copied into it (`docker save | docker load`), and a copy of `stack/`
   (secrets included, owners kept) with the `.env` setup writes on such an engine is bind-mounted
   at the same path, so the host's `docker compose` (DOCKER_HOST = the inner socket) finds every
   file it mounts;
3. `up --wait` WITHOUT the override must fail with Compose's start_interval error; WITH it, a cold
   start (new containers, empty volumes) is timed and each service's first healthy probe read from
   its health log;
4. `pytest -m infra` runs against that stack inside the engine container's network namespace
   (`nsenter -n`: the published ports are on its 127.0.0.1; nothing is bound on the host).

Everything is named `stackcheck-legacy*` and removed at the end (the engine container with every
container, network and volume inside it, its data volume, the stack copy). Every step has a
deadline. `python -m stackcheck.ops.legacy_engine check` runs it; tests/legacy runs that (opt-in);
docs/legacy-engine.md has the figures measured here.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stackcheck.mode import read_env_file

PREFIX = "stackcheck-legacy"
CONTAINER = f"{PREFIX}-engine"
DATA_VOLUME = f"{PREFIX}-data"
PROJECT = PREFIX
OVERRIDE = "compose.legacy-engine.yml"
ENGINE_MIN_MAJOR = 25  # the first engine with health-check start_interval (as in ./run)
BASE_IMAGE = "debian:bookworm-slim"  # setup's local offline base
INNER_RUN = "/run/stackcheck-legacy"  # where the inner engine also puts its socket

# Built from stdin (no context): Debian 12's docker.io on the project's Debian base. The RUN line
# is the Swarm worker's (tests/swarm/worker), so the build cache usually has it already.
DOCKERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update \\
 && apt-get install -y --no-install-recommends docker.io iptables ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["dockerd"]
"""

START_INTERVAL_ERROR = re.compile(r"start_interval.*(?:Engine|API)", re.IGNORECASE)


class LegacyEngineError(RuntimeError):
    """A step of the check could not run (not: the stack misbehaved; that is in the result)."""


# --- pure parts (tests/unit/stackcheck/ops/test_legacy_engine.py) -------------------
def engine_image_tag(dockerfile: str = DOCKERFILE) -> str:
    return f"{PREFIX}/engine:{hashlib.sha256(dockerfile.encode()).hexdigest()[:12]}"


def engine_major(version: str) -> int | None:
    """'20.10.24+dfsg1' -> 20; None when it is no version."""
    m = re.match(r"\s*(\d+)\.", version)
    return int(m.group(1)) if m else None


def stack_files(dotenv: Mapping[str, str], *, legacy: bool) -> list[str]:
    """The compose files setup chooses: compose.yml, the offline override where setup chose
    offline mode, and the legacy-engine override on an old engine (always last)."""
    files = ["compose.yml"]
    if dotenv.get("STACKCHECK_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        files.append("compose.offline.yml")
    return [*files, OVERRIDE] if legacy else files


def legacy_dotenv(dotenv: Mapping[str, str], *, socket_gid: int) -> dict[str, str]:
    """The stack/.env setup writes on an engine before 25: its own project, the override in
    COMPOSE_FILE, the inner engine's socket group for the API proxy; the rest as the host's."""
    out = dict(dotenv)
    out["COMPOSE_PROJECT_NAME"] = PROJECT
    out["COMPOSE_FILE"] = ":".join(stack_files(dotenv, legacy=True))
    out["DOCKER_SOCKET_GID"] = str(socket_gid)
    return out


def render_dotenv(values: Mapping[str, str]) -> str:
    head = "# Written by stackcheck.ops.legacy_engine: what ./run setup writes before Engine 25\n"
    return head + "".join(f"{k}={v}\n" for k, v in values.items())


def parse_time(stamp: str) -> datetime | None:
    """Docker's RFC 3339 timestamps with nanoseconds ('2026-12-02T15:11:13.169096965Z')."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", stamp.strip())
    if not m or m.group(1).startswith("0001-"):
        return None
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}")


@dataclass
class ServiceStart:
    service: str
    started_at: float  # seconds after `up` was issued
    healthy_at: float | None  # end of the first passing probe, seconds after `up` was issued
    failed_probes: int  # probes that failed before the first passing one
    status: str

    @property
    def healthy_after(self) -> float | None:
        """From its container's start to its first passing probe."""
        return None if self.healthy_at is None else self.healthy_at - self.started_at


def service_start(inspect: Mapping, t0: datetime) -> ServiceStart:
    """One container's start, from `docker inspect`: when it started and when its first probe
    passed (the health log keeps the last 5 probes: enough for a cold start at 30 s each)."""
    state = inspect["State"]
    labels = inspect.get("Config", {}).get("Labels") or {}
    name = labels.get("com.docker.compose.service") or inspect.get("Name", "?").lstrip("/")
    started = parse_time(state.get("StartedAt", ""))
    health = state.get("Health") or {}
    healthy_at, failed = None, 0
    for probe in health.get("Log") or []:
        if probe.get("ExitCode") == 0:
            healthy_at = parse_time(probe.get("End", ""))
            break
        failed += 1
    rel = lambda t: None if t is None else round((t - t0).total_seconds(), 1)  # noqa: E731
    return ServiceStart(
        service=name,
        started_at=rel(started) if started else 0.0,
        healthy_at=rel(healthy_at),
        failed_probes=failed,
        status=health.get("Status") or state.get("Status", "?"),
    )


def junit_counts(xml_text: str) -> dict[str, int]:
    """passed/failed/errors/skipped of a JUnit XML report (pytest's, one or more suites)."""
    root = ET.fromstring(xml_text)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        for key in total:
            total[key] += int(s.get(key, 0))
    failed = [
        f"{c.get('classname')}::{c.get('name')}"
        for s in suites
        for c in s.iter("testcase")
        if c.find("failure") is not None or c.find("error") is not None
    ]
    return {
        "passed": total["tests"] - total["failures"] - total["errors"] - total["skipped"],
        "failed": total["failures"],
        "errors": total["errors"],
        "skipped": total["skipped"],
        "failed_tests": failed,  # type: ignore[dict-item]
    }


def setup_detection_script(run_text: str) -> str:
    """The part of ./run that detects an engine before 25 and says what it costs (ENGINE_MIN_MAJOR,
    engine_major, engine_compat), lifted out of `run` so it can be run alone against an engine
    (the whole setup would rewrite the checkout's stack/.env)."""
    lines = run_text.splitlines()
    out = [ln for ln in lines if ln.startswith(("ENGINE_MIN_MAJOR=", "engine_major()"))]
    start = next((i for i, ln in enumerate(lines) if ln.startswith("engine_compat()")), None)
    if start is None or len(out) != 2:
        raise LegacyEngineError("./run has no engine_compat/engine_major/ENGINE_MIN_MAJOR")
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    out += lines[start : end + 1]
    return "\n".join([*out, "engine_compat", 'echo "LEGACY_ENGINE=$LEGACY_ENGINE"', ""])


def cost_sentence(result: CheckResult) -> str:
    """The sentence setup should print on an older engine, with this run's cold start (rounded to
    10 s; Engine 25+: the README's 34-40 s on a quiet machine, 60 s measured beside this check
    under load, docs/legacy-engine.md)."""
    took = int(round(result.cold_up_s, -1))
    return (
        f"engine {result.engine_version.split('.')[0]} is older than {ENGINE_MIN_MAJOR}: no "
        "health-check start_interval, so each health check first runs after its 30 s interval "
        f"and every depends_on level waits for it: a cold start takes ~{took} s instead of "
        f"~35-60 s (measured on Engine {result.engine_version.split('+')[0]}: "
        f"docs/legacy-engine.md; stack/{OVERRIDE})"
    )


@dataclass
class CheckResult:
    engine_version: str = ""
    setup_legacy: bool = False  # ./run's engine check chose compose.legacy-engine.yml
    setup_message: str = ""  # and printed this
    load_s: float = 0.0
    error_without_override: str = ""
    cold_up_s: float = 0.0
    cold_up_ok: bool = False
    services: list[ServiceStart] = field(default_factory=list)
    infra: dict = field(default_factory=dict)
    markers: str = "infra"
    infra_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def all_healthy(self) -> bool:
        return bool(self.services) and all(s.status == "healthy" for s in self.services)

    @property
    def ok(self) -> bool:
        infra_ok = not self.infra or (self.infra.get("failed", 1) == 0 and not self.infra["errors"])
        return (
            self.setup_legacy
            and bool(self.error_without_override)
            and self.cold_up_ok
            and self.all_healthy
            and infra_ok
        )

    def to_json(self) -> dict:
        data = asdict(self)
        for s, d in zip(self.services, data["services"], strict=True):
            d["healthy_after"] = None if s.healthy_after is None else round(s.healthy_after, 1)
        data["ok"] = self.ok
        data["all_healthy"] = self.all_healthy
        return data

    def lines(self) -> list[str]:
        out = [
            f"engine: Docker {self.engine_version} (in {CONTAINER}); images loaded in "
            f"{self.load_s:.0f} s",
            f"./run setup's engine check: {'adds' if self.setup_legacy else 'does NOT add'} "
            f"{OVERRIDE}, printing: {self.setup_message}",
            f"without {OVERRIDE}: {self.error_without_override or 'NO ERROR (unexpected)'}",
            f"with {OVERRIDE}: cold `up --wait` {self.cold_up_s:.1f} s, "
            + ("all healthy" if self.all_healthy and self.cold_up_ok else "NOT all healthy"),
            f"  {'service':<20} {'started':>8} {'healthy':>8} {'after':>7} failed-probes",
        ]
        for s in sorted(self.services, key=lambda s: (s.healthy_at or 1e9, s.service)):
            fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
            out.append(
                f"  {s.service:<20} {fmt(s.started_at):>8} {fmt(s.healthy_at):>8} "
                f"{fmt(s.healthy_after):>7} {s.failed_probes}  {s.status}"
            )
        if self.infra:
            i = self.infra
            out.append(
                f"pytest -m '{self.markers}' on it: {i['passed']} passed, {i['failed']} failed, "
                f"{i['errors']} errors, {i['skipped']} skipped in {self.infra_s:.0f} s"
            )
            out += [f"  FAILED {t}" for t in i.get("failed_tests", [])]
        out += [f"note: {n}" for n in self.notes]
        out.append(f"setup should say: {cost_sentence(self)}")
        return out


# --- the check ----------------------------------------------------------------------------------
class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, cap: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise LegacyEngineError("the check ran out of its time budget (--timeout)")
        return min(cap, left)


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    cwd: Path | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, timeout=timeout, env=env, cwd=cwd, input=input
        )
    except subprocess.TimeoutExpired as exc:
        raise LegacyEngineError(f"`{' '.join(argv[:4])} ...` took over {timeout:.0f} s") from exc
    if check and proc.returncode:
        err = proc.stderr.decode(errors="replace").strip()[-800:]
        raise LegacyEngineError(f"`{' '.join(argv[:6])}` failed: {err}")
    return proc


def remove_engine() -> None:
    """The engine container (every container, network and volume of the inner engine lives in
    it) and its data volume. Deleting the image layers takes minutes on a loaded machine."""
    run(["docker", "rm", "-f", "-v", CONTAINER], timeout=300, check=False)
    run(["docker", "volume", "rm", "-f", DATA_VOLUME], timeout=900, check=False)


class LegacyEngine:
    """The older engine in a container, the stack copy it sees, and their teardown."""

    def __init__(self, root: Path, *, deadline: Deadline, say: Callable[[str], None] = print):
        self.root = root
        self.stack = root / "stack"
        self.deadline = deadline
        self.say = say
        self.work = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
        self.run_dir = self.work / "run"
        self.copy = self.work / "stack"
        self.socket = self.run_dir / "docker.sock"
        # the inner suite's tmp_path files (a test's throwaway secret) must be visible to the inner
        # engine at the same path, as the host's /tmp is to the host's engine; pytest recreates
        # --basetemp itself, so its parent is what is mounted
        self.tmp = self.work / "tmp"
        self.host_dotenv = read_env_file(self.stack / ".env")

    # the host engine (the caller's DOCKER_HOST or the default)
    def host(self, *args: str, cap: float = 120, **kw) -> subprocess.CompletedProcess:
        return run(["docker", *args], timeout=self.deadline.left(cap), **kw)

    def inner_env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("COMPOSE_", "STACKCHECK_", "DOCKER_"))
        }
        return {**env, "DOCKER_HOST": f"unix://{self.socket}", **extra}

    def inner(self, *args: str, cap: float = 120, **kw) -> subprocess.CompletedProcess:
        return run(["docker", *args], timeout=self.deadline.left(cap), env=self.inner_env(), **kw)

    def compose(self, files: Sequence[str], *args: str, cap: float, **kw):
        # the copy's .env gives the project, ports and socket group; COMPOSE_FILE picks the files
        env = self.inner_env(COMPOSE_FILE=":".join(files))
        return run(
            ["docker", "compose", *args],
            timeout=self.deadline.left(cap),
            env=env,
            cwd=self.copy,
            **kw,
        )

    def images(self) -> list[str]:
        files = stack_files(self.host_dotenv, legacy=False)
        argv = ["docker", "compose", "--project-directory", str(self.stack)]
        for f in files:
            argv += ["-f", str(self.stack / f)]
        out = run([*argv, "config", "--images"], timeout=self.deadline.left(60)).stdout
        imgs = sorted({ln.strip() for ln in out.decode().splitlines() if ln.strip()})
        missing = [i for i in imgs if self.host("image", "inspect", i, check=False).returncode]
        if missing:
            raise LegacyEngineError(
                f"the host engine lacks {', '.join(missing)}: run ./run setup first"
            )
        # setup's offline base: the suite's throwaway containers use it (its layers are shared)
        if not self.host("image", "inspect", BASE_IMAGE, check=False).returncode:
            imgs.append(BASE_IMAGE)
        return imgs

    def start(self, storage_driver: str) -> str:
        self.down_leftovers()
        tag = engine_image_tag()
        if self.host("image", "inspect", tag, check=False).returncode:
            self.say(f"building {tag} (Debian 12 docker.io on debian:bookworm-slim)")
            self.host("build", "-q", "-t", tag, "-", cap=900, input=DOCKERFILE.encode())
        self.run_dir.mkdir()
        self.tmp.mkdir()
        # the stack as setup leaves it (secrets' owners and modes kept: cp -a), read-only inside
        run(["cp", "-a", str(self.stack), str(self.copy)], timeout=self.deadline.left(60))
        (self.copy / ".env").unlink(missing_ok=True)
        self.host(
            "run", "-d", "--privileged", "--name", CONTAINER, "--hostname", CONTAINER,
            "--label", "org.stackcheck.kind=legacy-engine",
            "-v", f"{DATA_VOLUME}:/var/lib/docker",
            "-v", f"{self.run_dir}:{INNER_RUN}",
            "-v", f"{self.copy}:{self.copy}:ro",
            "-v", f"{self.tmp}:{self.tmp}",
            tag, f"--storage-driver={storage_driver}",
            "-H", "unix:///var/run/docker.sock", "-H", f"unix://{INNER_RUN}/docker.sock",
        )  # fmt: skip
        end = time.monotonic() + self.deadline.left(60)
        while True:
            proc = self.inner("version", "--format", "{{.Server.Version}}", cap=10, check=False)
            if proc.returncode == 0:
                break
            if time.monotonic() > end:
                logs = self.host("logs", "--tail", "15", CONTAINER, check=False)
                raise LegacyEngineError(
                    "the inner engine did not answer within 60 s: "
                    + logs.stderr.decode(errors="replace")[-600:]
                )
            time.sleep(1)
        version = proc.stdout.decode().strip()
        gid = self.host("exec", CONTAINER, "stat", "-c", "%g", "/var/run/docker.sock").stdout
        values = legacy_dotenv(self.host_dotenv, socket_gid=int(gid.decode().strip()))
        (self.copy / ".env").write_text(render_dotenv(values), encoding="utf-8")
        return version

    def load(self, images: Sequence[str]) -> float:
        t0 = time.monotonic()
        save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
        try:
            load = subprocess.run(
                ["docker", "load", "-q"],
                stdin=save.stdout,
                capture_output=True,
                env=self.inner_env(),
                timeout=self.deadline.left(1200),
            )
        finally:
            if save.stdout:
                save.stdout.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                save.wait(timeout=30)
            if save.poll() is None:
                save.kill()
        if save.returncode or load.returncode:
            raise LegacyEngineError(f"docker save | docker load failed: {load.stderr[-500:]!r}")
        return time.monotonic() - t0

    def setup_says(self) -> tuple[bool, str]:
        """What ./run's engine check concludes and prints on this engine."""
        script = setup_detection_script((self.root / "run").read_text(encoding="utf-8"))
        proc = run(["bash", "-c", script], timeout=self.deadline.left(60), env=self.inner_env())
        out = proc.stdout.decode().strip().splitlines()
        legacy = "LEGACY_ENGINE=1" in out
        return legacy, " ".join(ln.strip() for ln in out if not ln.startswith("LEGACY_ENGINE="))

    def pid(self) -> int:
        return int(self.host("inspect", "-f", "{{.State.Pid}}", CONTAINER).stdout.decode())

    def services(self, t0: datetime) -> list[ServiceStart]:
        ids = self.inner(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"
        ).stdout.split()
        if not ids:
            return []
        data = json.loads(self.inner("inspect", *[i.decode() for i in ids]).stdout)
        return [service_start(c, t0) for c in data]

    def infra(self, cap: float, markers: str = "infra") -> tuple[dict, float, Path]:
        """`pytest -m infra` in the engine container's network namespace (its 127.0.0.1)."""
        reports = self.work / "reports"
        reports.mkdir()
        env = self.inner_env(STACKCHECK_STACK="reuse", STACKCHECK_WORKERS="0")
        argv = [
            "nsenter", "-t", str(self.pid()), "-n", "--",
            sys.executable, "-m", "pytest", f"--rootdir={self.root}", "-m", markers,
            "-p", "no:cacheprovider", "-q", f"--stack-dir={self.copy}",
            f"--evidence-dir={reports}", f"--html={reports}/report.html",
            f"--junitxml={reports}/junit.xml", f"--basetemp={self.tmp}/pytest",
        ]  # fmt: skip
        t0 = time.monotonic()
        proc = run(argv, timeout=self.deadline.left(cap), env=env, cwd=self.root, check=False)
        took = time.monotonic() - t0
        (reports / "pytest.log").write_bytes(proc.stdout + proc.stderr)
        junit = reports / "junit.xml"
        if not junit.is_file():
            raise LegacyEngineError(
                "pytest -m infra wrote no report: " + proc.stderr.decode(errors="replace")[-600:]
            )
        return junit_counts(junit.read_text(encoding="utf-8")), took, reports

    def down_leftovers(self) -> None:
        """A container or volume of an interrupted earlier check (ours by name) goes first."""
        remove_engine()

    def teardown(self, keep_reports: Path | None = None) -> None:
        try:
            self.down_leftovers()
        except LegacyEngineError as exc:  # say it, and still remove the secrets' copy
            self.say(f"teardown incomplete ({exc}): `python -m stackcheck.ops.legacy_engine down`")
        if keep_reports and (self.work / "reports").is_dir():
            shutil.copytree(self.work / "reports", keep_reports, dirs_exist_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)  # the stack copy holds the secrets


def check(
    root: Path,
    *,
    timeout: float = 1800,
    infra: bool = True,
    markers: str = "infra",
    storage_driver: str = "overlay2",
    reports: Path | None = None,
    say: Callable[[str], None] = print,
) -> CheckResult:
    """Run the whole check once; always tears down. Raises LegacyEngineError when a step cannot
    run; what the stack did (errors, health, test results) is in the result."""
    deadline = Deadline(timeout)
    result = CheckResult()
    engine = LegacyEngine(root, deadline=deadline, say=say)
    try:
        images = engine.images()
        result.engine_version = engine.start(storage_driver)
        say(f"inner engine answers: Docker {result.engine_version}")
        major = engine_major(result.engine_version)
        if major is None or major >= ENGINE_MIN_MAJOR:
            raise LegacyEngineError(f"the inner engine is {result.engine_version}, not before 25")
        result.setup_legacy, result.setup_message = engine.setup_says()
        say(f"./run's engine check: {result.setup_message or '(nothing printed)'}")
        if not result.setup_legacy:
            result.notes.append(f"./run would not add {OVERRIDE} on this engine")
        say(f"loading {len(images)} images (docker save | docker load)")
        result.load_s = engine.load(images)
        say(f"  {result.load_s:.0f} s")

        files = stack_files(engine.host_dotenv, legacy=False)
        proc = engine.compose(files, "up", "-d", "--wait", "--no-build", cap=120, check=False)
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        hit = [ln.strip() for ln in err if START_INTERVAL_ERROR.search(ln)]
        if proc.returncode and hit:
            result.error_without_override = hit[-1]
        elif proc.returncode == 0:
            result.notes.append(f"up without {OVERRIDE} succeeded: the override is not needed?")
        else:
            result.notes.append(f"up without {OVERRIDE} failed otherwise: {err[-1:]}")
        say(f"without {OVERRIDE}: {result.error_without_override or result.notes[-1]}")

        say(f"cold `up --wait` with {OVERRIDE} (health checks every 30 s)")
        files = stack_files(engine.host_dotenv, legacy=True)
        t0 = datetime.now(UTC)
        m0 = time.monotonic()
        proc = engine.compose(
            files, "up", "-d", "--wait", "--wait-timeout", "600", "--no-build", cap=660,
            check=False,
        )  # fmt: skip
        result.cold_up_s = round(time.monotonic() - m0, 1)
        result.cold_up_ok = proc.returncode == 0
        if not result.cold_up_ok:
            result.notes.append(
                "up --wait failed: " + proc.stderr.decode(errors="replace").strip()[-400:]
            )
        result.services = engine.services(t0)
        say(f"  {result.cold_up_s:.1f} s")
        if infra:
            if os.geteuid() != 0:
                result.notes.append("pytest -m infra not run: nsenter into the netns needs root")
            else:
                say(f"pytest -m '{markers}' against it (in the engine container's netns)")
                result.markers = markers
                result.infra, result.infra_s, _ = engine.infra(cap=1200, markers=markers)
        return result
    finally:
        say(f"tearing down {CONTAINER} and {DATA_VOLUME}")
        engine.teardown(keep_reports=reports)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stackcheck.ops.legacy_engine", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="prove the stack on Docker Engine 20.10 (minutes)")
    c.add_argument("--root", type=Path, default=Path.cwd(), help="the checkout (default: .)")
    c.add_argument("--timeout", type=float, default=1800, help="budget for everything, s")
    c.add_argument("--no-infra", action="store_true", help="skip pytest -m infra")
    c.add_argument("-m", dest="markers", default="infra", help="the suite's tests to run there")
    c.add_argument("--storage-driver", default="overlay2", help="the inner engine's (or vfs)")
    c.add_argument("--json", type=Path, help="write the figures there as JSON")
    c.add_argument("--reports", type=Path, help="keep the infra run's reports there")
    sub.add_parser("down", help="remove what an interrupted check left (stackcheck-legacy-*)")
    args = p.parse_args(argv)
    if args.cmd == "down":
        remove_engine()
        return 0
    say = lambda s: print(s, flush=True)  # noqa: E731
    try:
        result = check(
            args.root.resolve(),
            timeout=args.timeout,
            infra=not args.no_infra,
            markers=args.markers,
            storage_driver=args.storage_driver,
            reports=args.reports,
            say=say,
        )
    except LegacyEngineError as exc:
        print(f"legacy-engine check could not run: {exc}", file=sys.stderr)
        return 2
    print("\n".join(result.lines()))
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
