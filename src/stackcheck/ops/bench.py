"""`./run bench`: the figures a change is compared on, side by side with the previous bench run.

Read from what earlier runs left:
  setup            seconds of the last `./run setup` (.stackcheck/setup-seconds, written by `run`)
  n8n prepare      seconds of the last stack/images/n8n/prepare.sh that installed anything
                   (.stackcheck/logs/prepare-n8n.log)
  full suite       total time of the last complete acceptance run (its junit.xml under
                   reports/runs/<id>/); without one, the kept run with the most tests, marked
                   PARTIAL
  SLA-P1 p50/p95   from reports/sla-evidence.json (the latest value of each, with its run)
Measured now:
  infra (warm)     wall time of `pytest -m infra` against the running stack (its reports go to
                   .stackcheck/bench/, not reports/, so the suite's own history stays as it was);
                   --no-infra skips it
  cold up          only with --cold, as it disrupts everyone using the stack: `docker compose
                   stop` and `rm -f` (containers only: volumes and images stay), then
                   `up -d --wait --no-build`, timed

Each run appends one JSON line to .stackcheck/bench.jsonl; the table shows the previous line's
figures beside this run's.

Run as `python -m stackcheck.ops.bench [--cold] [--no-infra]`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stackcheck import project_root

SETUP_FILE = "setup-seconds"  # in .stackcheck/: "<seconds>" (run's setup writes it)
BENCH_LOG = "bench.jsonl"
PREPARE_LOG = "logs/prepare-n8n.log"
_PREPARED = re.compile(r"prepared .*?, (\d+) s \(stamp")


@dataclass
class Figure:
    key: str
    label: str
    value: float | None = None  # seconds; None: not known (note says why)
    note: str = ""  # where it comes from, or why it is missing
    extra: dict = field(default_factory=dict)  # goes to the JSON line beside the value


# --- what earlier runs left ------------------------------------------------------------------


def read_setup(state: Path) -> Figure:
    fig = Figure("setup_s", "setup (last ./run setup)")
    path = state / SETUP_FILE
    try:
        fig.value = float(path.read_text(encoding="utf-8").split()[0])
    except (OSError, IndexError, ValueError):
        fig.note = "no record yet (./run setup writes .stackcheck/setup-seconds)"
        return fig
    fig.note = f"at {_mtime(path)}"
    return fig


def read_n8n_prepare(state: Path) -> Figure:
    fig = Figure("n8n_prepare_s", "n8n prepare (last install)")
    path = state / PREPARE_LOG
    try:
        found = _PREPARED.findall(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        found = []
    if not found:
        fig.note = "no install logged (up to date, or never run)"
        return fig
    fig.value = float(found[-1])
    fig.note = f"at {_mtime(path)}"
    return fig


def junit_totals(path: Path) -> dict:
    """Total time and counts of a JUnit XML file (<testsuites> or a single <testsuite>)."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    out = {"time": 0.0, "tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        out["time"] += float(s.get("time") or 0)
        for k in ("tests", "failures", "errors", "skipped"):
            out[k] += int(s.get(k) or 0)
    if root.tag == "testsuites" and root.get("time"):
        out["time"] = float(root.get("time"))
    return out


def _counts(t: dict) -> str:
    bad = t["failures"] + t["errors"]
    return f"{t['tests']} tests, {bad} failed, {t['skipped']} skipped"


def last_full_suite(reports: Path) -> Figure:
    """The newest complete run's total time (its own junit.xml). Without one, the kept run that
    ran the most tests (newest first), then reports/junit.xml: both marked PARTIAL."""
    fig = Figure("suite_s", "last full suite (junit total)")
    partial: tuple[int, str, Path] | None = None  # (tests, run id, junit) of the biggest run
    for ev in sorted((reports / "runs").glob("*/sla-evidence.json"), reverse=True):
        try:
            run = json.loads(ev.read_text(encoding="utf-8")).get("run") or {}
        except (OSError, json.JSONDecodeError):
            continue
        junit = ev.parent / "junit.xml"
        if not junit.is_file():
            continue
        rid = run.get("id", ev.parent.name)
        if run.get("complete"):
            t = junit_totals(junit)
            fig.value = round(t["time"], 1)
            fig.note = f"run {rid}: {_counts(t)}"
            fig.extra = {"suite_run": rid, "suite_tests": t["tests"]}
            return fig
        tests = junit_totals(junit)["tests"]
        if partial is None or tests > partial[0]:
            partial = (tests, rid, junit)
    if partial is not None:
        junit, where = partial[2], f"run {partial[1]}"
    else:
        junit, where = reports / "junit.xml", "reports/junit.xml"
    if junit.is_file():
        t = junit_totals(junit)
        fig.value = round(t["time"], 1)
        fig.note = f"PARTIAL (no complete run kept): {where}, {_counts(t)}"
        fig.extra = {"suite_run": None, "suite_tests": t["tests"]}
    else:
        fig.note = "no junit.xml yet (./run main writes one)"
    return fig


def p1_figures(evidence: dict) -> tuple[Figure, Figure]:
    """SLA-P1's p50 and p95: the measurements whose method starts with "p50"/"p95" (as
    tests/perf records them), else computed from recorded latency samples."""
    p50 = Figure("p1_p50_s", "SLA-P1 p50 (mail, no AI)")
    p95 = Figure("p1_p95_s", "SLA-P1 p95 (mail, no AI)")
    req = next((r for r in evidence.get("requirements", []) if r.get("id") == "SLA-P1"), None)
    if req is None:
        p50.note = p95.note = "no SLA-P1 in the evidence"
        return p50, p95
    for fig, prefix in ((p50, "p50"), (p95, "p95")):
        for m in req.get("measurements", []):
            if str(m.get("how", "")).startswith(prefix) and isinstance(m.get("value"), int | float):
                fig.value = float(m["value"])
                fig.note = f"run {m.get('run') or '?'}: {m.get('verdict') or 'recorded'}"
    dists = [s for s in req.get("samples", []) if s.get("kind") == "distribution"]
    values = [float(v) for v in dists[-1]["values"]] if dists else []
    if len(values) >= 2:
        for fig, q in ((p50, statistics.median(values)), (p95, _p95(values))):
            if fig.value is None:
                fig.value = round(q, 3)
                fig.note = f"run {dists[-1].get('run') or '?'}: from {len(values)} samples"
    for fig in (p50, p95):
        if fig.value is None:
            fig.note = "not measured yet (tests/perf/test_mail_latency.py)"
    return p50, p95


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]  # as plots.py


def read_evidence(reports: Path) -> dict:
    try:
        return json.loads((reports / "sla-evidence.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _mtime(path: Path) -> str:
    t = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return t.strftime("%Y-%m-%d %H:%M UTC")


# --- measured now ----------------------------------------------------------------------------


def _say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def time_cold_up(stack_dir: Path) -> Figure:
    fig = Figure("cold_up_s", "cold up --wait (containers new)")
    for cmd in (["docker", "compose", "stop"], ["docker", "compose", "rm", "-f"]):
        _say(" ".join(cmd))
        proc = subprocess.run(cmd, cwd=stack_dir, capture_output=True, text=True)
        if proc.returncode != 0:
            fig.note = f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-200:]}"
            return fig
    _say("docker compose up -d --wait --no-build (timed)")
    start = time.monotonic()
    proc = subprocess.run(
        ["docker", "compose", "up", "-d", "--wait", "--no-build"],
        cwd=stack_dir,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - start
    if proc.returncode != 0:
        fig.note = f"up failed after {took:.0f} s: {proc.stderr.strip()[-200:]}"
        return fig
    fig.value = round(took, 1)
    fig.note = "stop + rm -f, then up -d --wait --no-build (volumes kept)"
    return fig


def infra_command(root: Path, out_dir: Path) -> list[str]:
    """`pytest -m infra` with the project's options but its reports in `out_dir` (addopts
    would write reports/), so the suite's own history stays as it was. --import-mode=importlib
    stays: tests/unit mirrors src/ and has test modules of the same basename."""
    return [
        str(root / ".venv" / "bin" / "pytest"),
        "-m",
        "infra",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=--strict-markers --import-mode=importlib",
        f"--junitxml={out_dir / 'junit.xml'}",
        f"--evidence-dir={out_dir}",
    ]


def time_infra(root: Path, out_dir: Path) -> Figure:
    fig = Figure("infra_s", "warm pytest -m infra (wall)")
    out_dir.mkdir(parents=True, exist_ok=True)
    junit = out_dir / "junit.xml"
    junit.unlink(missing_ok=True)
    cmd = infra_command(root, out_dir)
    _say("pytest -m infra (timed; reports in .stackcheck/bench/)")
    start = time.monotonic()
    with (out_dir / "pytest.log").open("w") as log:
        proc = subprocess.run(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    took = time.monotonic() - start
    fig.value = round(took, 1)
    counts = _counts(junit_totals(junit)) if junit.is_file() else "no junit.xml"
    fig.note = f"exit {proc.returncode}: {counts}"
    fig.extra = {"infra_exit": proc.returncode}
    return fig


# --- output ----------------------------------------------------------------------------------


def load_previous(log: Path) -> dict | None:
    """The last complete JSON line of bench.jsonl (a torn last line is skipped)."""
    last = None
    try:
        with log.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("figures"), dict):
                    last = rec
    except FileNotFoundError:
        pass
    return last


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f} s" if v < 10 else f"{v:.1f} s" if v < 100 else f"{v:.0f} s"


def _change(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return ""
    d = now - before
    pct = f" ({d / before * 100:+.0f}%)" if before else ""
    return f"{'+' if d >= 0 else '-'}{_fmt(abs(d))}{pct}"


def render(figs: list[Figure], previous: dict | None) -> str:
    prev = (previous or {}).get("figures", {})
    when = (previous or {}).get("at", "")[:16].replace("T", " ")
    head = ("figure", "now", f"previous {when}".strip() if previous else "previous", "change", "")
    rows = [head]
    for f in figs:
        before = prev.get(f.key)
        rows.append((f.label, _fmt(f.value), _fmt(before), _change(f.value, before), f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[i].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join([*cells, r[4]]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def record(figs: list[Figure], commit: str, dirty: bool, now: datetime) -> dict:
    rec = {
        "at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "dirty": dirty,
        "figures": {f.key: f.value for f in figs},
        "notes": {f.key: f.note for f in figs if f.note},
    }
    for f in figs:
        rec.update(f.extra)
    return rec


def append(log: Path, rec: dict) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackcheck.ops.bench", description=__doc__)
    parser.add_argument("--cold", action="store_true", help="also time a cold `up --wait`")
    parser.add_argument("--no-infra", action="store_true", help="do not run pytest -m infra")
    args = parser.parse_args(argv)
    from stackcheck.evidence.history import git_commit

    root = project_root()
    state = root / ".stackcheck"
    reports = root / "reports"
    # read before anything runs: the runs below must not become "the last one"
    figs = [read_setup(state), read_n8n_prepare(state)]
    cold = Figure("cold_up_s", "cold up --wait (containers new)", note="not measured (--cold)")
    if args.cold:
        cold = time_cold_up(root / "stack")
    figs.append(cold)
    infra = Figure("infra_s", "warm pytest -m infra (wall)", note="not run (--no-infra)")
    if not args.no_infra:
        infra = time_infra(root, state / "bench")
    figs += [infra, last_full_suite(reports), *p1_figures(read_evidence(reports))]
    log = state / BENCH_LOG
    previous = load_previous(log)
    commit, dirty = git_commit(root)
    rec = record(figs, commit, dirty, datetime.now(UTC))
    print(render(figs, previous))
    append(log, rec)
    state_of = f"{commit} + changes" if dirty else commit
    print(f"\n(appended to {log.relative_to(root)}; commit {state_of})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
