"""SLA evidence: per requirement ID, which tests cover it, what they measured, and the verdict.

The report lists every ID of the catalogue, covered or not, so a gap is visible rather than
hidden; a reviewer reads target, measured value, verdict and method side by side.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stackcheck.evidence.catalogue import Catalogue
from stackcheck.evidence.report import render
from stackcheck.evidence.thresholds import Threshold
from stackcheck.evidence.verdicts import (  # noqa: F401 (re-exported: the recorder's verdicts)
    FAIL,
    NOT_COVERED,
    PASS,
    PROVISIONAL,
    SKIPPED,
    VERDICTS,
)

SAMPLE_KINDS = ("distribution", "timeline", "labelled")


@dataclass
class Measurement:
    value: float | str
    unit: str
    how: str
    test: str
    verdict: str | None = None  # None: the test outcome decides


@dataclass
class Samples:
    """A test's raw samples behind a measurement, for the report's plots: `distribution` (a list
    of values, e.g. per-mail latencies), `timeline` (seconds since the start at which each event
    happened, e.g. each mail of a burst stored) or `labelled` (label -> value, e.g. per service)."""

    values: list[float] | dict[str, float]
    unit: str
    how: str
    test: str
    kind: str = "distribution"


def verdict_of(tests: dict[str, str], measurements: list) -> str:
    """The verdict of one requirement from its tests' outcomes and its judged measurements
    (Measurement objects or their dicts)."""
    verdicts = [m["verdict"] if isinstance(m, dict) else m.verdict for m in measurements]
    if not tests and not measurements:
        return NOT_COVERED
    outcomes = set(tests.values())
    if "failed" in outcomes or FAIL in verdicts:
        return FAIL
    if PROVISIONAL in verdicts:
        return PROVISIONAL
    if "passed" in outcomes or (not outcomes and PASS in verdicts):
        return PASS
    return SKIPPED


@dataclass
class Entry:
    id: str
    group: str
    requirement: str
    target: str
    tests: dict[str, str] = field(default_factory=dict)  # nodeid -> outcome
    measurements: list[Measurement] = field(default_factory=list)
    samples: list[Samples] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return verdict_of(self.tests, self.measurements)

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
        self,
        rid: str,
        value: float | str,
        *,
        unit: str = "",
        how: str,
        test: str = "",
        verdict: str | None = None,
    ) -> Measurement:
        """Record a measured value; numeric values are judged against the ID's threshold unless
        the caller decides the verdict (`verdict`, e.g. PROVISIONAL for a window too short)."""
        th = self.thresholds.get(rid)
        if th is not None and th.bound is not None and isinstance(value, int | float):
            if verdict is None:
                verdict = PASS if th.met_by(float(value)) else FAIL
            unit = unit or th.unit
        if verdict is not None and verdict not in (PASS, FAIL, PROVISIONAL):
            raise ValueError(f"{rid}: a measurement's verdict is pass, fail or provisional")
        m = Measurement(value, unit, how, test, verdict)
        self.entries[rid].measurements.append(m)
        return m

    def samples(
        self,
        rid: str,
        values,
        *,
        unit: str = "",
        how: str = "",
        test: str = "",
        kind: str | None = None,
    ) -> Samples:
        """Record raw samples (see Samples) for the report's plots; they judge nothing."""
        if rid not in self.entries:
            raise KeyError(rid)
        if isinstance(values, dict):
            kind = kind or "labelled"
            values = {str(k): float(v) for k, v in values.items()}
        else:
            kind = kind or "distribution"
            values = [float(v) for v in values]
        if kind not in SAMPLE_KINDS or (kind == "labelled") != isinstance(values, dict):
            raise ValueError(f"{rid}: samples of kind {kind!r} do not fit {type(values).__name__}")
        th = self.thresholds.get(rid)
        s = Samples(values, unit or (th.unit if th else ""), how, test, kind)
        self.entries[rid].samples.append(s)
        return s

    def summary(self) -> dict[str, int]:
        return summarise(e.verdict for e in self.entries.values())

    def export(self) -> dict:
        """What this process recorded, in plain types (an xdist worker sends it to the
        controller, which `absorb`s every worker's into the run's one evidence)."""
        entries = {
            rid: {
                "tests": dict(e.tests),
                "measurements": [asdict(m) for m in e.measurements],
                "samples": [asdict(s) for s in e.samples],
            }
            for rid, e in self.entries.items()
            if e.tests or e.measurements or e.samples
        }
        return {"entries": entries, "context": dict(self.context)}

    def absorb(self, exported: dict) -> None:
        """Merge another process's `export`: outcomes (a failure wins), measurements, samples,
        and context keys this one does not have yet."""
        for rid, d in exported.get("entries", {}).items():
            if rid not in self.entries:
                raise KeyError(f"{rid}: not in this catalogue")
            for nodeid, outcome in d.get("tests", {}).items():
                self.outcome(rid, nodeid, outcome)
            self.entries[rid].measurements += [Measurement(**m) for m in d.get("measurements", [])]
            self.entries[rid].samples += [Samples(**s) for s in d.get("samples", [])]
        for key, value in exported.get("context", {}).items():
            self.context.setdefault(key, value)

    def as_dict(self) -> dict:
        return {
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "context": self.context,
            "summary": self.summary(),
            "requirements": [self._with_bound(e.as_dict()) for e in self.entries.values()],
        }

    def _with_bound(self, d: dict) -> dict:
        """The numeric target beside its text, for trends and regressions in the report."""
        th = self.thresholds.get(d["id"])
        d["bound"] = th.bound if th else None
        d["target_value"] = th.value if th else None
        d["unit"] = th.unit if th else ""
        return d

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        data = self.as_dict()
        jpath = directory / "sla-evidence.json"
        hpath = directory / "sla-evidence.html"
        jpath.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        hpath.write_text(render_html(data), encoding="utf-8")
        return jpath, hpath


def summarise(verdicts) -> dict[str, int]:
    """Counts per verdict; "provisional" only appears once a requirement has that verdict, so
    the summary of earlier reports keeps its four keys."""
    counts: dict[str, int] = {PASS: 0, FAIL: 0, SKIPPED: 0, NOT_COVERED: 0}
    for v in verdicts:
        counts[v] = counts.get(v, 0) + 1
    return counts


def render_html(data: dict, history: list[dict] | None = None) -> str:
    """The reviewer's page (evidence.report), for this evidence alone or with its history."""
    return render(data, history or [])
