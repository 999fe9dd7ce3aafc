"""SLA evidence: per requirement ID, which tests cover it, what they measured, and the verdict.

The report lists every ID of the catalogue, covered or not, so a gap is visible rather than
hidden; a reviewer reads target, measured value, verdict and method side by side.
"""

from __future__ import annotations

import html
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stackcheck.catalogue import Catalogue
from stackcheck.thresholds import Threshold

PASS, FAIL, SKIPPED, NOT_COVERED = "pass", "fail", "skipped", "not covered"


@dataclass
class Measurement:
    value: float | str
    unit: str
    how: str
    test: str
    verdict: str | None = None  # None: the test outcome decides


@dataclass
class Entry:
    id: str
    group: str
    requirement: str
    target: str
    tests: dict[str, str] = field(default_factory=dict)  # nodeid -> outcome
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if not self.tests and not self.measurements:
            return NOT_COVERED
        outcomes = set(self.tests.values())
        if "failed" in outcomes or any(m.verdict == FAIL for m in self.measurements):
            return FAIL
        if "passed" in outcomes or (
            not outcomes and any(m.verdict == PASS for m in self.measurements)
        ):
            return PASS
        return SKIPPED

    def as_dict(self) -> dict:
        d = asdict(self)
        d["verdict"] = self.verdict
        d["covered"] = bool(self.tests)
        return d


class Evidence:
    """Collects outcomes and measurements during a run and writes JSON and HTML at its end."""

    def __init__(self, catalogue: Catalogue, thresholds: dict[str, Threshold]):
        self.thresholds = thresholds
        self.entries: dict[str, Entry] = {}
        for req in catalogue:
            th = thresholds.get(req.id)
            target = th.describe() if th else req.text
            self.entries[req.id] = Entry(req.id, req.group, req.text, target)
        self.context: dict[str, str] = {}

    def outcome(self, rid: str, nodeid: str, outcome: str) -> None:
        """Record a test's outcome; a failure in any phase wins over a later pass."""
        tests = self.entries[rid].tests
        if tests.get(nodeid) == "failed":
            return
        tests[nodeid] = outcome

    def measure(
        self, rid: str, value: float | str, *, unit: str = "", how: str, test: str = ""
    ) -> Measurement:
        """Record a measured value; numeric values are judged against the ID's threshold."""
        th = self.thresholds.get(rid)
        verdict = None
        if th is not None and th.bound is not None and isinstance(value, int | float):
            verdict = PASS if th.met_by(float(value)) else FAIL
            unit = unit or th.unit
        m = Measurement(value, unit, how, test, verdict)
        self.entries[rid].measurements.append(m)
        return m

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {PASS: 0, FAIL: 0, SKIPPED: 0, NOT_COVERED: 0}
        for e in self.entries.values():
            counts[e.verdict] += 1
        return counts

    def as_dict(self) -> dict:
        return {
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "context": self.context,
            "summary": self.summary(),
            "requirements": [e.as_dict() for e in self.entries.values()],
        }

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        data = self.as_dict()
        jpath = directory / "sla-evidence.json"
        hpath = directory / "sla-evidence.html"
        jpath.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        hpath.write_text(render_html(data), encoding="utf-8")
        return jpath, hpath


_COLOURS = {PASS: "#d4edda", FAIL: "#f8d7da", SKIPPED: "#fff3cd", NOT_COVERED: "#e2e3e5"}


def _measured_cell(req: dict) -> str:
    parts = []
    for m in req["measurements"]:
        value = f"{m['value']:.4g}" if isinstance(m["value"], float) else str(m["value"])
        unit = f" {m['unit']}" if m["unit"] else ""
        mark = {PASS: " ✓", FAIL: " ✗"}.get(m["verdict"] or "", "")
        parts.append(f"<b>{html.escape(value + unit)}</b>{mark}")
    return "<br>".join(parts) or "—"


def _how_cell(req: dict) -> str:
    hows = [html.escape(m["how"]) for m in req["measurements"]]
    tests = [f"<code>{html.escape(t)}</code>: {html.escape(o)}" for t, o in req["tests"].items()]
    return "<br>".join(hows + tests) or "no test covers this requirement yet"


def render_html(data: dict) -> str:
    rows = []
    for req in data["requirements"]:
        colour = _COLOURS[req["verdict"]]
        rows.append(
            f"<tr style='background:{colour}'><td><b>{html.escape(req['id'])}</b></td>"
            f"<td>{html.escape(req['requirement'])}</td><td>{html.escape(req['target'])}</td>"
            f"<td>{_measured_cell(req)}</td><td>{html.escape(req['verdict'])}</td>"
            f"<td class=how>{_how_cell(req)}</td></tr>"
        )
    summary = ", ".join(f"{v} {k}" for k, v in data["summary"].items())
    context = "".join(
        f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in data["context"].items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SLA evidence</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border: 1px solid #999; padding: 4px 8px; vertical-align: top; text-align: left; }}
td.how {{ font-size: 85%; }}
</style></head><body>
<h1>SLA evidence</h1>
<p>Generated {html.escape(data["generated"])} on {html.escape(data["host"])}.
Requirements: {html.escape(summary)}.</p>
<ul>{context}</ul>
<table><thead><tr><th>ID</th><th>Requirement</th><th>Target</th><th>Measured</th>
<th>Verdict</th><th>How it was measured</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
