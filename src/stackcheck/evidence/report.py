"""The SLA evidence page a reviewer reads in a minute (reports/sla-evidence.html).

From the top: a verdict banner (what fails, and which runs the evidence comes from), the
regressions against the previous run, one section per area with its pass/fail counts and a
table fitted to the page (target beside the measured value, each value labelled with its run,
the method folded away), then the plots (inline SVG): mail latency, the burst over time,
recovery per service, and the trend of every measured requirement over the history.
No scripts, no external resources: the file is the whole report, and it prints to A4.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from stackcheck.evidence import plots
from stackcheck.evidence.verdicts import FAIL, NOT_COVERED, PASS, PROVISIONAL, SKIPPED

# area -> ID prefixes (longest prefix wins; exact IDs listed where one group spans two areas)
AREAS: dict[str, tuple[str, ...]] = {
    "availability": ("T", "SLA-AV", "SLA-H", "H"),
    "performance": ("SLA-P", "SLA-DB", "SLA-D", "O"),
    "recovery": ("SLA-R", "E3", "X"),
    "security": ("S",),
    "backup": ("B",),
    "monitoring": ("M", "E5"),
    "mail flows": ("E", "A", "RW"),
    "documents": ("D",),
    "the suite": ("SC",),
}
# plots: which requirement's samples go where
LATENCY_IDS = ("SLA-P1", "SLA-P2")
BURST_IDS = ("E4",)
RECOVERY_IDS = ("SLA-R1", "SLA-R2", "SLA-R3", "SLA-R4", "SLA-R5")
# a regression: worse than the previous run by more than 10 % of its value and by more than
# 5 % of the target (so 2 -> 7 MB against a 100 MB limit is noise, 5 -> 65 ms against 100 ms not),
# or a pass that became a fail
REGRESSION_TOLERANCE = 0.10
REGRESSION_OF_TARGET = 0.05


def area_of(rid: str) -> str:
    best, length = "other", -1
    for area, prefixes in AREAS.items():
        for p in prefixes:
            exact = rid == p
            if exact or (rid.startswith(p) and rid[len(p) :].isdigit()):
                n = 1000 if exact else len(p)
                if n > length:
                    best, length = area, n
    return best


def esc(x: object) -> str:
    return html.escape(str(x))


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_label(run_id: str | None) -> str:
    """20261202T100344Z-b6a7376 -> 12-02 10:03 b6a7376"""
    if not run_id:
        return "?"
    stamp, _, rest = run_id.partition("-")
    if len(stamp) >= 15 and stamp[8] == "T":
        return f"{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]} {rest}"
    return run_id


# --- trends and regressions -------------------------------------------------------------
def representative(values: list[float], bound: str | None) -> float:
    """One number per run: the worst of its measurements (max for a ≤ target, min for ≥)."""
    if bound == "max":
        return max(values)
    if bound == "min":
        return min(values)
    return values[-1]


def _worse(req: dict, before: float, now: float) -> str:
    """Why `now` is a regression from `before` for this requirement, or "" (see the margins)."""
    bound = req.get("bound")
    worse = (now - before) if bound == "max" else (before - now) if bound == "min" else 0
    if worse > REGRESSION_TOLERANCE * max(abs(before), 1e-9) and worse > REGRESSION_OF_TARGET * abs(
        req.get("target_value") or 0
    ):
        pct = worse / abs(before or 1)
        return f"{fmt(before)} → {fmt(now)} {req.get('unit', '')} ({pct:+.0%} worse)"
    return ""


def series_from_history(
    history: list[dict], reqs: dict[str, dict], baseline: dict | None = None
) -> list[dict]:
    """Per measured requirement, its value per run (in the order the runs finished), and
    whether the latest run regressed against the one before it, or against the stored
    baseline (history.pin_baseline: a run an operator accepted as the reference)."""
    per: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    order: dict[str, str] = {}
    verdicts: dict[tuple[str, str], str] = {}
    for line in history:
        if line.get("kind") == "run":
            order[line["run"]] = line.get("finished", "")
        elif line.get("kind") == "measurement" and line.get("id") in reqs:
            v = line.get("value")
            if isinstance(v, int | float) and not isinstance(v, bool):
                per[line["id"]][line["run"]].append(float(v))
                if line.get("verdict") == FAIL:
                    verdicts[(line["id"], line["run"])] = FAIL
                else:
                    verdicts.setdefault((line["id"], line["run"]), line.get("verdict") or "")
    out = []
    for rid, req in reqs.items():
        if rid not in per:
            continue
        runs = sorted(per[rid], key=lambda r: (order.get(r, ""), r))
        bound = req.get("bound")
        points = [(run_label(r)[:11], representative(per[rid][r], bound)) for r in runs]
        regressed, why = False, ""
        if len(runs) > 1:
            prev, last = points[-2][1], points[-1][1]
            prev_v, last_v = verdicts.get((rid, runs[-2])), verdicts.get((rid, runs[-1]))
            if prev_v == PASS and last_v == FAIL:
                regressed, why = True, "passed in the previous run, fails now"
            elif change := _worse(req, prev, last):
                regressed, why = True, change
        against_base = ""
        base = (baseline or {}).get("values", {}).get(rid)
        if base is not None and runs[-1] != baseline.get("run"):
            last_v = verdicts.get((rid, runs[-1]))
            if base.get("verdict") == PASS and last_v == FAIL:
                against_base = "passed in the baseline run, fails now"
            elif isinstance(base.get("value"), int | float):
                against_base = _worse(req, float(base["value"]), points[-1][1])
        out.append(
            {
                "id": rid,
                "unit": req.get("unit") or "",
                "points": points,
                "runs": runs,
                "target": req.get("target_value"),
                "bound": bound,
                "regressed": regressed,
                "why": why,
                "baseline": None if base is None else base.get("value"),
                "regressed_from_baseline": bool(against_base),
                "why_baseline": against_base,
            }
        )
    return out


# --- plots from samples -----------------------------------------------------------------
def _samples(reqs: dict[str, dict], ids, kind: str) -> list[tuple[str, dict, dict]]:
    return [
        (rid, reqs[rid], s)
        for rid in ids
        if rid in reqs
        for s in reqs[rid].get("samples", [])
        if s["kind"] == kind
    ]


def _short_test(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1].removeprefix("test_").replace("_", " ")


def figures(data: dict, series: list[dict]) -> list[tuple[str, str, str]]:
    """(id, caption, svg) of every plot there is data for; what has none is listed apart."""
    reqs = {r["id"]: r for r in data["requirements"]}
    out = []
    sets = [
        {
            "label": f"{rid} {s['how'] or _short_test(s['test'])}"[:34],
            "values": s["values"],
            "unit": s["unit"],
            "target": req.get("target_value"),
            "bound": req.get("bound"),
        }
        for rid, req, s in _samples(reqs, LATENCY_IDS, "distribution")
    ]
    svg = plots.distribution(sets, title="Mail processing latency, per mail")
    if svg:
        tests = sorted({s["test"] for _, _, s in _samples(reqs, LATENCY_IDS, "distribution")})
        out.append(("latency", f"Each dot one mail; from {', '.join(tests)}.", svg))
    for rid, req, s in _samples(reqs, BURST_IDS, "timeline"):
        svg = plots.timeline(
            s["values"],
            title=f"{rid}: burst over time, {_short_test(s['test'])}"[:80],
            unit=s["unit"],
            target=req.get("target_value"),
        )
        if svg:
            out.append((f"burst-{len(out)}", s["how"] or "cumulative count", svg))
    items: list[tuple[str, float]] = []
    ids: set[str] = set()
    for rid, _req, s in _samples(reqs, RECOVERY_IDS, "labelled"):
        items += [(f"{k} ({rid})", v) for k, v in s["values"].items()]
        ids.add(rid)
    source = "per service, as the recovery tests recorded them (sla.samples)"
    if not items:  # no per-service samples: one bar per recovery measurement
        for rid in RECOVERY_IDS:
            for m in reqs.get(rid, {}).get("measurements", []):
                if isinstance(m["value"], int | float):
                    items.append((f"{rid} {_short_test(m['test'])}"[:40], float(m["value"])))
                    ids.add(rid)
        source = "one bar per recovery measurement (the tests record no per-service samples)"
    # one target line only where every bar answers to the same requirement
    target = reqs[next(iter(ids))].get("target_value") if len(ids) == 1 else None
    unit = "s"
    svg = plots.bars(items, title="Recovery times", unit=unit, target=target)
    if svg:
        out.append(("recovery", f"Seconds until healthy again; {source}. Red: over target.", svg))
    svg = plots.trends([s for s in series if len(s["points"]) > 1])
    once = [s["id"] for s in series if len(s["points"]) == 1]
    if svg:
        out.append(
            (
                "trends",
                "Each requirement's value in every run that measured it (the worst of the run's "
                "measurements), oldest left; target dashed; the pinned baseline dotted; "
                "red ▲: regressed against the run before or the baseline."
                + (f" Measured in one run only (no trend yet): {', '.join(once)}." if once else ""),
                svg,
            )
        )
    return out


# --- the page ---------------------------------------------------------------------------
CSS = """
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 16px; color: #1c1c1c; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 17px; margin: 24px 0 6px; }
.banner { border-radius: 6px; padding: 12px 16px; color: #fff; }
.banner.fail { background: #b71c1c; } .banner.pass { background: #1b5e20; }
.banner.provisional { background: #8d6e00; }
.banner .big { font-size: 26px; font-weight: 700; }
.banner p { margin: 4px 0 0; }
.areas { display: flex; flex-wrap: wrap; gap: 6px; margin: 10px 0; padding: 0; }
.areas li { list-style: none; border: 1px solid #bbb; border-radius: 4px; padding: 2px 8px; }
.areas a { color: inherit; text-decoration: none; }
.n-fail { color: #b71c1c; font-weight: 700; } .n-pass { color: #1b5e20; }
.n-prov { color: #8d6e00; font-weight: 700; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left;
         overflow-wrap: anywhere; }
th { background: #f2f2f2; }
col.id { width: 9%; } col.req { width: 38%; } col.target { width: 17%; }
col.measured { width: 24%; } col.verdict { width: 12%; }
tr.pass td.v { background: #d4edda; } tr.fail td.v { background: #f8d7da; font-weight: 700; }
tr.skipped td.v { background: #fff3cd; } tr.not-covered td.v { background: #e2e3e5; }
tr.provisional td.v { background: #ffe9a8; }
tr.fail td:first-child { border-left: 4px solid #b71c1c; }
details { font-size: 12px; color: #444; margin-top: 3px; }
summary { cursor: pointer; color: #555; }
.run { font-size: 11px; color: #555; background: #eef; border-radius: 3px; padding: 0 3px;
       white-space: nowrap; }
.run.newer { background: #fde7c8; }
.reg { color: #b71c1c; font-weight: 700; }
ul.attention li { margin-bottom: 4px; overflow-wrap: anywhere; }
figure { margin: 12px 0; } figure svg { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: #444; }
code { font-size: 11px; }
.muted { color: #666; font-size: 12px; }
@page { size: A4; margin: 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10px; }
  tr, figure { break-inside: avoid; }
  .banner { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  td.v { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

_VERDICT_CLASS = {
    PASS: "pass",
    FAIL: "fail",
    SKIPPED: "skipped",
    NOT_COVERED: "not-covered",
    PROVISIONAL: "provisional",
}


def _counts(verdicts: list[str]) -> str:
    c = defaultdict(int)
    for v in verdicts:
        c[v] += 1
    parts = [f"<span class=n-pass>{c[PASS]} pass</span>"]
    if c[FAIL]:
        parts.append(f"<span class=n-fail>{c[FAIL]} fail</span>")
    if c[PROVISIONAL]:
        parts.append(f"<span class=n-prov>{c[PROVISIONAL]} provisional</span>")
    for v in (SKIPPED, NOT_COVERED):
        if c[v]:
            parts.append(f"{c[v]} {v}")
    return " · ".join(parts)


def _run_tag(run_id: str | None, base: str | None) -> str:
    if not run_id:
        return ""
    cls = "run newer" if base and run_id != base else "run"
    return f" <span class='{cls}' title='{esc(run_id)}'>{esc(run_label(run_id))}</span>"


def _measured(req: dict, base: str | None) -> str:
    parts = []
    for m in req["measurements"]:
        unit = f" {m['unit']}" if m["unit"] else ""
        mark = {PASS: " ✓", FAIL: " ✗", PROVISIONAL: " (provisional)"}.get(m["verdict"] or "", "")
        parts.append(f"<b>{esc(fmt(m['value']) + unit)}</b>{mark}{_run_tag(m.get('run'), base)}")
    if not parts and req["tests"]:
        runs = sorted(set(req.get("test_runs", {}).values()))
        return "test outcome only" + "".join(_run_tag(r, base) for r in runs)
    return "<br>".join(parts) or "—"


def _method(req: dict, base: str | None) -> str:
    if not req["tests"] and not req["measurements"]:
        return "<br><span class=muted>no test covers this requirement yet</span>"
    items = [f"<li>{esc(m['how'])}</li>" for m in req["measurements"] if m["how"]]
    runs = req.get("test_runs", {})
    items += [
        f"<li><code>{esc(t)}</code>: {esc(o)}{_run_tag(runs.get(t), base)}</li>"
        for t, o in req["tests"].items()
    ]
    n = len(req["tests"])
    return (
        f"<details><summary>method, {n} test{'s' if n != 1 else ''}</summary>"
        f"<ul>{''.join(items)}</ul></details>"
    )


def _row(req: dict, base: str | None, regressions: dict[str, dict]) -> str:
    cls = _VERDICT_CLASS.get(req["verdict"], "skipped")
    reg = regressions.get(req["id"])
    # a target that is the requirement's own text is not repeated
    target = "as stated" if req["target"] == req["requirement"] else esc(req["target"])
    badge = f"<br><span class=reg title='{esc(reg['why'])}'>▲ regression</span>" if reg else ""
    return (
        f"<tr class='{cls}' id='req-{esc(req['id'])}'><td><b>{esc(req['id'])}</b></td>"
        f"<td>{esc(req['requirement'])}{_method(req, base)}</td>"
        f"<td>{target}</td><td>{_measured(req, base)}</td>"
        f"<td class=v>{esc(req['verdict'])}{badge}</td></tr>"
    )


def _banner(data: dict) -> str:
    s = data["summary"]
    total = sum(s.values())
    if s.get(FAIL):
        cls, word = "fail", "FAIL"
        head = f"{s[FAIL]} of {total} requirements fail"
    elif s.get(PROVISIONAL):
        cls, word = "provisional", "PASS SO FAR"
        head = f"none of {total} requirements fails; {s[PROVISIONAL]} provisional"
    else:
        cls, word = "pass", "PASS"
        head = f"none of {total} requirements fails"
    counts = ", ".join(f"{v} {k}" for k, v in s.items())
    runs = data.get("runs") or ([data["run"]] if data.get("run") else [])
    base = data.get("complete_run")
    if base:
        basis = f"complete run {esc(run_label(base))}"
        if len(runs) > 1:
            basis += f" + {len(runs) - 1} newer partial run{'s' if len(runs) > 2 else ''}"
    elif "complete_run" in data:
        basis = f"no complete run yet: {len(runs)} partial run{'s' if len(runs) != 1 else ''}"
    else:
        r = data.get("run", {})
        basis = f"this run only ({'complete' if r.get('complete') else 'partial'})"
    failing = [r["id"] for r in data["requirements"] if r["verdict"] == FAIL]
    fail_line = (
        "<p>Failing: "
        + ", ".join(f"<a style='color:#fff' href='#req-{esc(i)}'>{esc(i)}</a>" for i in failing)
        + "</p>"
        if failing
        else ""
    )
    provisional = [r["id"] for r in data["requirements"] if r["verdict"] == PROVISIONAL]
    prov_line = (
        "<p>Provisional (measured over less than the window of their target, projection "
        "shown): "
        + ", ".join(f"<a style='color:#fff' href='#req-{esc(i)}'>{esc(i)}</a>" for i in provisional)
        + "</p>"
        if provisional
        else ""
    )
    return (
        f"<div class='banner {cls}'><div class=big>{word}: {esc(head)}</div>"
        f"<p>{esc(counts)}. Evidence: {basis}; generated {esc(data['generated'])} on "
        f"{esc(data['host'])}.</p>{fail_line}{prov_line}</div>"
    )


def _runs_table(data: dict) -> str:
    runs = data.get("runs") or ([data["run"]] if data.get("run") else [])
    if not runs:
        return ""
    rows = "".join(
        f"<tr><td>{esc(run_label(r['id']))}</td>"
        f"<td>{'complete' if r.get('complete') else 'partial'}</td>"
        f"<td>{esc(r.get('commit', ''))}{' +changes' if r.get('dirty') else ''}</td>"
        f"<td>{esc(r.get('context', {}).get('selection', ''))}</td>"
        f"<td>{esc(', '.join(f'{v} {k}' for k, v in r.get('summary', {}).items()))}</td></tr>"
        for r in runs
    )
    # a long list stays folded: the banner already says how many runs and which is complete
    fold = "<details open>" if len(runs) <= 6 else "<details>"
    return (
        f"<h2 id=runs>Runs this evidence comes from ({len(runs)})</h2>{fold}<summary>"
        f"{'the runs, oldest first' if len(runs) <= 6 else f'show all {len(runs)} runs'}"
        "</summary><table><colgroup><col style='width:14%'>"
        "<col style='width:10%'><col style='width:14%'><col style='width:36%'>"
        "<col style='width:26%'></colgroup><thead><tr><th>run</th><th>kind</th><th>commit</th>"
        f"<th>selection</th><th>verdicts of that run</th></tr></thead><tbody>{rows}</tbody>"
        "</table></details>"
    )


def _benchmarks_table(data: dict) -> str:
    """pytest-benchmark's results of the newest run that had any, against the run before."""
    benches = data.get("benchmarks") or []
    if not benches:
        return ""
    rows = []
    for b in benches:
        prev = b.get("previous")
        change = b.get("change")
        slower = change is not None and change > REGRESSION_TOLERANCE
        cmp = (
            f"<span class='{'reg' if slower else 'n-pass'}'>{change:+.0%}</span> against "
            f"{fmt(prev['median'])} s ({esc(run_label(prev['run']))})"
            if prev and change is not None
            else "no earlier run with this benchmark"
        )
        p95 = f"{fmt(b['p95'])} s" if b.get("p95") is not None else "—"
        rows.append(
            f"<tr><td><code>{esc(b['name'])}</code></td><td>{esc(b.get('mode') or '')} "
            f"{b['rounds']} rounds</td><td><b>{fmt(b['median'])} s</b></td><td>{p95}</td>"
            f"<td>{fmt(b['min'])} to {fmt(b['max'])} s</td><td>{cmp}</td></tr>"
        )
    return (
        "<h2 id=benchmarks>Benchmarks (pytest-benchmark)</h2><table><colgroup>"
        "<col style='width:32%'><col style='width:13%'><col style='width:10%'>"
        "<col style='width:10%'><col style='width:13%'><col style='width:22%'></colgroup>"
        "<thead><tr><th>benchmark</th><th>rounds</th><th>median</th><th>p95</th><th>range</th>"
        f"<th>median against the previous run</th></tr></thead><tbody>{''.join(rows)}</tbody>"
        "</table>"
    )


def _attention(data: dict, base: str | None) -> str:
    """Right under the banner: each failing requirement with what failed and in which run."""
    items = []
    for r in data["requirements"]:
        if r["verdict"] != FAIL:
            continue
        runs = r.get("test_runs", {})
        what = [
            f"<code>{esc(t)}</code> {esc(o)}{_run_tag(runs.get(t), base)}"
            for t, o in r["tests"].items()
            if o == "failed"
        ]
        what += [
            f"measured <b>{esc(fmt(m['value']))} {esc(m['unit'])}</b> against "
            f"{esc(r['target'])}{_run_tag(m.get('run'), base)}"
            for m in r["measurements"]
            if m["verdict"] == FAIL
        ]
        items.append(
            f"<li><a href='#req-{esc(r['id'])}'><b>{esc(r['id'])}</b></a> "
            f"{esc(r['requirement'][:120])}: {'; '.join(what)}</li>"
        )
    return (
        f"<h2 class=reg>What fails</h2><ul class=attention>{''.join(items)}</ul>" if items else ""
    )


def _regressions_html(regressions: dict, from_base: dict, baseline: dict | None) -> str:
    """The regressions against the previous run and against the pinned baseline."""
    out = ""
    if regressions:
        items = "".join(
            f"<li><a href='#req-{esc(i)}'>{esc(i)}</a>: {esc(s['why'])}</li>"
            for i, s in regressions.items()
        )
        out = f"<h2 class=reg>Regressions against the previous run</h2><ul>{items}</ul>"
    if from_base:
        items = "".join(
            f"<li><a href='#req-{esc(i)}'>{esc(i)}</a>: {esc(s['why_baseline'])}</li>"
            for i, s in from_base.items()
        )
        out += (
            f"<h2 class=reg>Regressions against the baseline "
            f"({esc(run_label(baseline['run']))})</h2><ul>{items}</ul>"
        )
    elif baseline:
        out += (
            f"<p class=n-pass>No regression against the baseline run "
            f"{esc(run_label(baseline['run']))} (pinned {esc(baseline.get('pinned', '?'))}).</p>"
        )
    return out


def render(data: dict, history: list[dict]) -> str:
    """The whole page for one evidence dict (a run's own, or the merged top-level one)."""
    reqs = {r["id"]: r for r in data["requirements"]}
    baseline = data.get("baseline")
    series = series_from_history(history, reqs, baseline)
    regressions = {s["id"]: s for s in series if s["regressed"]}
    from_base = {s["id"]: s for s in series if s["regressed_from_baseline"]}
    base = data.get("complete_run") or (data.get("run") or {}).get("id")
    by_area: dict[str, list[dict]] = defaultdict(list)
    for r in data["requirements"]:
        by_area[area_of(r["id"])].append(r)
    order = [a for a in [*AREAS, "other"] if by_area.get(a)]

    nav = "".join(
        f"<li><a href='#area-{esc(a.replace(' ', '-'))}'><b>{esc(a)}</b> "
        f"{_counts([r['verdict'] for r in by_area[a]])}</a></li>"
        for a in order
    )
    nav += "<li><a href='#plots'><b>plots</b></a></li><li><a href='#runs'><b>runs</b></a></li>"
    reg_html = _regressions_html(regressions, from_base, baseline)
    sections = []
    for a in order:
        rows = "".join(_row(r, base, regressions) for r in by_area[a])
        sections.append(
            f"<h2 id='area-{esc(a.replace(' ', '-'))}'>{esc(a.capitalize())} "
            f"<small>{_counts([r['verdict'] for r in by_area[a]])}</small></h2>"
            "<table><colgroup><col class=id><col class=req><col class=target>"
            "<col class=measured><col class=verdict></colgroup><thead><tr><th>ID</th>"
            "<th>Requirement</th><th>Target</th><th>Measured</th><th>Verdict</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    figs = figures(data, series)
    fig_html = "".join(
        f"<figure id='plot-{esc(fid)}' class=plot>{svg}<figcaption>{esc(cap)}</figcaption></figure>"
        for fid, cap, svg in figs
    )
    missing = []
    have = {f[0].split("-")[0] for f in figs}
    for key, what in (
        ("latency", "latency distribution (SLA-P1/P2 record no samples)"),
        ("burst", "burst over time (E4 records no timeline)"),
        ("recovery", "recovery times (no SLA-R measurements)"),
        ("trends", "trends (no requirement measured in two runs yet)"),
    ):
        if key not in have:
            missing.append(what)
    missing_html = f"<p class=muted>Not plotted: {esc('; '.join(missing))}.</p>" if missing else ""
    context = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in data.get("context", {}).items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SLA evidence</title><style>{CSS}</style></head><body>
<h1>SLA evidence</h1>
{_banner(data)}
<ul class=areas>{nav}</ul>
{_attention(data, base)}
{reg_html}
{"".join(sections)}
<h2 id=plots>Plots</h2>
{fig_html}{missing_html}
{_benchmarks_table(data)}
{_runs_table(data)}
<details><summary>Context of the run</summary><ul>{context}</ul></details>
</body></html>
"""


# --- the screenshot ----------------------------------------------------------------------
BROWSERS = ("chromium", "chromium-browser", "google-chrome")  # Debian, Ubuntu, GitHub's runners


def browser() -> str | None:
    import shutil

    return next((shutil.which(n) for n in BROWSERS if shutil.which(n)), None)


def screenshot(page: Path, png: Path, *, timeout: float = 90.0) -> str:
    """The first 1280 x 900 px of the evidence page as a reviewer opens it, next to it; a line
    saying what happened (no browser is not an error: the page itself is the evidence)."""
    import subprocess

    exe = browser()
    if exe is None:
        return f"no screenshot: no {' / '.join(BROWSERS)} on this host"
    try:
        proc = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--hide-scrollbars", "--window-size=1280,900", f"--screenshot={png}",
             page.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no screenshot: {exc}"
    if proc.returncode != 0 or not png.is_file():
        return f"no screenshot: {exe} exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
    return f"screenshot {png}"
