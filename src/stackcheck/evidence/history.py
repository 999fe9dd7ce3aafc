"""Every run kept, and one history of every measured value (issue 14).

Layout under the evidence folder (default reports/):

    runs/<UTC start>-<short commit>/   one folder per run that proved any requirement:
        sla-evidence.json / .html      that run's own evidence (its "run" key: id, times,
                                       whether it was complete, commit, selection, context)
        junit.xml, report.html         copies of what pytest wrote for that run
        benchmark.json                 pytest-benchmark's results of that run, every round
                                       (the evidence's "benchmarks" key: medians, and the
                                       change against the newest earlier run with the same
                                       benchmark)
    history.jsonl                      append-only, one JSON object per line:
        {"kind": "run", ...}           one per run: its metadata and verdict counts
        {"kind": "measurement", ...}   every measured value with its requirement, verdict,
                                       test, method and the run's context
        {"kind": "verdict", ...}       every covered requirement's verdict in that run
        {"kind": "samples", ...}       raw samples a test recorded (sla.samples), their own
                                       kind (distribution, timeline, labelled) in sample_kind
    sla-evidence.json / .html          the latest complete run merged with every newer
                                       partial run, each test outcome and value labelled with
                                       the run it came from

A run is complete when it collected every acceptance suite (plugin.SUITES), deselected nothing,
named only folders (no single files or test IDs) and was not stopped early. A partial run
(`pytest -m infra`, `pytest tests/unit`, one file) replaces only what it re-ran: the outcomes
of the tests it ran and their measurements; everything else keeps the complete run's values.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from stackcheck.evidence.recorder import summarise, verdict_of

RUNS = "runs"
HISTORY = "history.jsonl"
EVIDENCE_JSON = "sla-evidence.json"
BASELINE_JSON = "baseline.json"  # the run an operator pinned as the reference (pin_baseline)
EVIDENCE_HTML = "sla-evidence.html"
LOCK = ".history.lock"
# the run context that goes with every history line (the rest stays in the run's own line)
CONTEXT_KEYS = (
    "commit",
    "dirty",
    "host",
    "images",
    "docker engine",
    "stack mode",
    "selection",
    "complete",
)


def git_commit(root: Path) -> tuple[str, bool]:
    """Short commit of the checkout and whether tracked files differ from it ("nogit", False
    outside a repository)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return "nogit", False
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return head.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "nogit", False


def stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Serialise writers of one evidence folder (two sessions on one checkout)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def new_run_dir(directory: Path, started: datetime, commit: str) -> Path:
    """reports/runs/<UTC start>-<commit>, made exclusively (a second run in the same second
    gets -2, -3, ...)."""
    runs = directory / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    base = f"{stamp(started)}-{commit}"
    for n in range(1, 1000):
        path = runs / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder for {base} in {runs}")


def label(data: dict, run_id: str) -> dict:
    """Label every test outcome, measurement and sample set of one run's evidence with its run."""
    for req in data["requirements"]:
        req["test_runs"] = dict.fromkeys(req["tests"], run_id)
        for m in req["measurements"]:
            m["run"] = run_id
        for s in req.get("samples", []):
            s["run"] = run_id
        req["runs"] = [run_id] if req["tests"] or req["measurements"] else []
    return data


def history_lines(data: dict) -> Iterator[dict]:
    run = data["run"]
    ctx = {k: run["context"][k] for k in CONTEXT_KEYS if k in run["context"]}
    head = {"run": run["id"], "finished": run["finished"]}
    yield {
        "kind": "run",
        **head,
        **{k: v for k, v in run.items() if k not in ("id",)},
        "benchmarks": data.get("benchmarks", []),
    }
    yield from _requirement_lines(data, head, ctx)


def _requirement_lines(data: dict, head: dict, ctx: dict) -> Iterator[dict]:
    for req in data["requirements"]:
        if req["tests"] or req["measurements"]:
            yield {
                "kind": "verdict",
                **head,
                "id": req["id"],
                "verdict": req["verdict"],
                "tests": req["tests"],
            }
        for m in req["measurements"]:
            yield {
                "kind": "measurement",
                **head,
                "id": req["id"],
                "value": m["value"],
                "unit": m["unit"],
                "verdict": m["verdict"],
                "test": m["test"],
                "how": m["how"],
                "context": ctx,
            }
        for s in req.get("samples", []):
            yield {
                "kind": "samples",
                **head,
                "id": req["id"],
                "sample_kind": s["kind"],
                **{k: s[k] for k in ("values", "unit", "how", "test")},
            }


def append_history(directory: Path, data: dict) -> None:
    with open(directory / HISTORY, "a", encoding="utf-8") as fh:
        for line in history_lines(data):
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")


def read_history(directory: Path) -> list[dict]:
    """Every line of history.jsonl; a torn last line (a crash mid-write) is skipped."""
    path = directory / HISTORY
    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def merge_ids(history: list[dict]) -> list[str] | None:
    """The runs a merge needs, from the history's run lines: the latest complete run and every
    run after it (all runs while none is complete); None without run lines (read every folder).
    So a publish reads a handful of run folders, not every run ever kept."""
    runs = sorted(
        (ln for ln in history if ln.get("kind") == "run"),
        key=lambda ln: (ln.get("finished", ""), ln["run"]),
    )
    if not runs:
        return None
    complete = [i for i, ln in enumerate(runs) if ln.get("complete")]
    return [ln["run"] for ln in runs[complete[-1] if complete else 0 :]]


def load_runs(directory: Path, ids: list[str] | None = None) -> list[dict]:
    """The kept runs' evidence (those named, else every one), oldest finish first."""
    runs = []
    if ids is None:
        paths = sorted((directory / RUNS).glob(f"*/{EVIDENCE_JSON}"))
    else:
        paths = [directory / RUNS / i / EVIDENCE_JSON for i in ids]
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("run"), dict):
            runs.append(data)
    runs.sort(key=lambda d: (d["run"].get("finished", ""), d["run"]["id"]))
    return runs


def merge(current: dict, runs: list[dict]) -> dict:
    """The latest complete run with every newer partial run laid over it.

    `current` gives the skeleton (this run's catalogue and targets: every ID, covered or not).
    A newer run replaces, per requirement, the outcome of each test it ran and the
    measurements and samples those tests recorded; what it did not run stays as it was.
    """
    complete = [i for i, r in enumerate(runs) if r["run"].get("complete")]
    layers = runs[complete[-1] :] if complete else runs
    merged = copy.deepcopy(current)
    merged.pop("run", None)
    by_id = {}
    for req in merged["requirements"]:
        req.update(tests={}, test_runs={}, measurements=[], samples=[], runs=[])
        by_id[req["id"]] = req
    for layer in layers:
        rid = layer["run"]["id"]
        for req in layer["requirements"]:
            tgt = by_id.get(req["id"])
            if tgt is None or not (req["tests"] or req["measurements"]):
                continue  # not in today's catalogue, or not covered by that run
            rerun = set(req["tests"]) | {m["test"] for m in req["measurements"]}
            for nodeid, outcome in req["tests"].items():
                tgt["tests"].pop(nodeid, None)  # keep the newest order
                tgt["tests"][nodeid] = outcome
                tgt["test_runs"][nodeid] = rid
            tgt["measurements"] = [m for m in tgt["measurements"] if m["test"] not in rerun]
            tgt["measurements"] += [{**m, "run": rid} for m in req["measurements"]]
            tgt["samples"] = [s for s in tgt["samples"] if s["test"] not in rerun]
            tgt["samples"] += [{**s, "run": rid} for s in req.get("samples", [])]
    for req in merged["requirements"]:
        req["verdict"] = verdict_of(req["tests"], req["measurements"])
        req["covered"] = bool(req["tests"])
        contributing = set(req["test_runs"].values()) | {m["run"] for m in req["measurements"]}
        req["runs"] = sorted(contributing)
        req["run"] = req["runs"][-1] if req["runs"] else None
    merged["summary"] = summarise(r["verdict"] for r in merged["requirements"])
    benched = [layer for layer in layers if layer.get("benchmarks")]
    merged["benchmarks"] = benched[-1]["benchmarks"] if benched else []
    merged["runs"] = [layer["run"] for layer in layers]
    merged["complete_run"] = layers[0]["run"]["id"] if complete else None
    if complete:
        merged["context"] = layers[0]["context"]
        merged["host"] = layers[0]["host"]
    merged["generated"] = iso(datetime.now(UTC))
    return merged


def copy_artifacts(run_dir: Path, paths: list[Path | None], since: float) -> list[str]:
    """Copy pytest's JUnit and HTML reports of this run into its folder (only files written
    during the run: an old report.html from an earlier run is not this run's)."""
    copied = []
    for p in paths:
        if p is None or not p.is_file() or p.stat().st_mtime < since:
            continue
        shutil.copy2(p, run_dir / p.name)
        copied.append(p.name)
    return copied


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a report


def compare_benchmarks(data: dict, history: list[dict]) -> None:
    """Give each benchmark of this run the median of the same benchmark in the newest earlier
    run that has it (the history's run lines), and the change in % (positive: slower)."""
    runs = sorted(
        (ln for ln in history if ln.get("kind") == "run" and ln["run"] != data["run"]["id"]),
        key=lambda ln: (ln.get("finished", ""), ln["run"]),
    )
    for b in data.get("benchmarks", []):
        for run in reversed(runs):
            prev = next((p for p in run.get("benchmarks", []) if p["name"] == b["name"]), None)
            if prev and prev.get("median"):
                b["previous"] = {"run": run["run"], "median": prev["median"]}
                b["change"] = (b["median"] - prev["median"]) / prev["median"]
                break


def pin_baseline(directory: Path, run_id: str | None = None) -> dict:
    """Pin a kept run (default: the newest complete one) as the baseline the report compares
    every later run with, beside the previous run: its representative value and verdict per
    measured requirement, in directory/baseline.json (kept with the history)."""
    from stackcheck.evidence.report import representative

    history = read_history(directory)
    if run_id is None:
        complete = [ln for ln in history if ln.get("kind") == "run" and ln.get("complete")]
        if not complete:
            raise ValueError(f"no complete run in {directory / HISTORY}: name a run to pin")
        run_id = max(complete, key=lambda ln: (ln.get("finished", ""), ln["run"]))["run"]
    path = directory / RUNS / run_id / EVIDENCE_JSON
    if not path.is_file():
        raise ValueError(f"no kept run {run_id!r} (no {path})")
    data = json.loads(path.read_text(encoding="utf-8"))
    values = {}
    for r in data["requirements"]:
        nums = [
            float(m["value"])
            for m in r.get("measurements", [])
            if isinstance(m.get("value"), int | float) and not isinstance(m["value"], bool)
        ]
        if nums:
            values[r["id"]] = {
                "value": representative(nums, r.get("bound")),
                "verdict": r.get("verdict"),
            }
    baseline = {"run": run_id, "pinned": iso(datetime.now(UTC)), "values": values}
    with locked(directory):
        _write(directory / BASELINE_JSON, json.dumps(baseline, indent=2) + "\n")
    return baseline


def read_baseline(directory: Path) -> dict | None:
    try:
        return json.loads((directory / BASELINE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def publish(
    directory: Path,
    data: dict,
    *,
    run_dir: Path,
    render: Callable[[dict, list[dict]], str],
) -> dict:
    """Write one run's evidence into its folder, append it to the history and rewrite the
    top-level evidence (the merge); return the merged data."""
    label(data, data["run"]["id"])
    with locked(directory):
        compare_benchmarks(data, read_history(directory))
        _write(run_dir / EVIDENCE_JSON, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        append_history(directory, data)
        history = read_history(directory)
        baseline = read_baseline(directory)
        _write(run_dir / EVIDENCE_HTML, render({**data, "baseline": baseline}, history))
        merged = merge(data, load_runs(directory, merge_ids(history)))
        merged["baseline"] = baseline
        _write(directory / EVIDENCE_JSON, json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
        _write(directory / EVIDENCE_HTML, render(merged, history))
    return merged


def rebuild(directory: Path, render: Callable[[dict, list[dict]], str]) -> dict | None:
    """Rewrite the top-level evidence from the kept runs (after a change to the report, or a
    run folder removed by hand); the newest run's catalogue gives the skeleton."""
    with locked(directory):
        history = read_history(directory)
        runs = load_runs(directory, merge_ids(history))
        if not runs:
            return None
        merged = merge(runs[-1], runs)
        merged["baseline"] = read_baseline(directory)
        _write(directory / EVIDENCE_JSON, json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
        _write(directory / EVIDENCE_HTML, render(merged, history))
    return merged


def main(argv: list[str] | None = None) -> int:
    """python -m stackcheck.evidence.history [EVIDENCE_DIR]: rebuild the top-level evidence.
    python -m stackcheck.evidence.history baseline [RUN_ID] [--dir EVIDENCE_DIR]: pin a run
    (default the newest complete one) as the baseline, then rebuild."""
    import sys

    from stackcheck.evidence.report import render

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "baseline":
        directory = Path("reports")
        if "--dir" in args:
            i = args.index("--dir")
            directory = Path(args[i + 1])
            del args[i : i + 2]
        try:
            pinned = pin_baseline(directory, args[1] if len(args) > 1 else None)
        except ValueError as exc:
            print(f"baseline: {exc}", file=sys.stderr)
            return 1
        print(f"baseline: run {pinned['run']} ({len(pinned['values'])} measured requirements)")
        args = [str(directory)]
    directory = Path(args[0] if args else "reports")
    merged = rebuild(directory, render)
    if merged is None:
        print(f"no kept runs in {directory / RUNS}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{v} {k}" for k, v in merged["summary"].items())
    print(f"{directory / EVIDENCE_HTML}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
