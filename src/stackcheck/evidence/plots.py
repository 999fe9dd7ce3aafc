"""The report's plots, made with matplotlib (Agg backend) and inlined as SVG.

Each function returns one `<svg>` element (ids prefixed, so several plots share a page without
clashing) or None when there is nothing to plot. Sizes are in inches at 96 dpi; the page scales
them to its width (max-width: 100 %).
"""

from __future__ import annotations

import io
import os
import re
import statistics
import tempfile
from itertools import count

# one font cache per user, also where HOME is a throwaway folder (pytester): else matplotlib
# rebuilds it in every such run, which takes seconds
os.environ.setdefault(
    "MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), f"stackcheck-matplotlib-{os.getuid()}")
)

import matplotlib

matplotlib.use("Agg")  # no display: render to files only
import matplotlib.pyplot as plt

plt.rcParams.update(
    {
        "svg.fonttype": "none",  # text stays text: smaller files, selectable, searchable
        "svg.hashsalt": "stackcheck",  # stable ids from run to run
        "font.size": 9,
        "font.family": "sans-serif",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 10,
        "axes.titleweight": "bold",
    }
)

OK, BAD, NEUTRAL, TARGET = "#2e7d32", "#c62828", "#1565c0", "#6d4c41"
_serial = count(1)
_ID = re.compile(r'id="([^"]+)"')


def to_svg(fig) -> str:
    """The figure as an inline <svg> element, its ids made unique on the page."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # date, creator
    prefix = f"p{next(_serial)}-"
    for old in set(_ID.findall(text)):
        new = prefix + old
        text = text.replace(f'id="{old}"', f'id="{new}"').replace(f"#{old})", f"#{new})")
        text = text.replace(f'href="#{old}"', f'href="#{new}"')
    return text


def _target(ax, value: float | None, bound: str | None, *, vertical: bool, span: float) -> None:
    """Draw the target as a dashed line when it lies within reach of the data, else say where."""
    if value is None:
        return
    if value <= span * 1.6:
        draw = ax.axvline if vertical else ax.axhline
        draw(value, color=TARGET, linestyle="--", linewidth=1.2, label=f"target {value:g}")
    else:
        sym = "≤" if bound == "max" else "≥"
        ax.text(
            0.99,
            0.97,
            f"target {sym} {value:g} (off the scale)",
            transform=ax.transAxes,
            ha="right",
            va="top",
            color=TARGET,
            fontsize=8,
        )


def distribution(sets: list[dict], *, title: str) -> str | None:
    """Latency distributions: one row per sample set (a strip of every sample over a box),
    with p50 and p95 written beside it and the target as a dashed line.

    sets: [{"label", "values", "unit", "target", "bound"}]"""
    sets = [s for s in sets if s["values"]]
    if not sets:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.75 * len(sets)))
    span = max(max(s["values"]) for s in sets)
    for i, s in enumerate(sets):
        vals = sorted(s["values"])
        ax.boxplot(vals, positions=[i], orientation="horizontal", widths=0.5, showfliers=False)
        jitter = [i + 0.18 * ((k % 5) - 2) / 2 for k in range(len(vals))]
        bad = s["target"] is not None and s["bound"] == "max"
        colours = [BAD if bad and v > s["target"] else NEUTRAL for v in vals]
        ax.scatter(vals, jitter, s=14, c=colours, alpha=0.75, zorder=3)
        p50 = statistics.median(vals)
        p95 = statistics.quantiles(vals, n=20, method="inclusive")[-1] if len(vals) > 1 else vals[0]
        ax.text(
            span * 1.02,
            i,
            f"n={len(vals)}  p50 {p50:.3g}  p95 {p95:.3g} {s['unit']}",
            va="center",
            fontsize=8,
        )
    targets = [s for s in sets if s["target"] is not None]
    if targets:
        _target(ax, targets[0]["target"], targets[0]["bound"], vertical=True, span=span)
    ax.set_yticks(range(len(sets)), [s["label"] for s in sets])
    ax.set_xlim(left=0)
    ax.set_xlabel(sets[0]["unit"] or "value")
    ax.set_title(title, loc="left")
    return to_svg(fig)


def timeline(values: list[float], *, title: str, unit: str, target: float | None) -> str | None:
    """Events over time (e.g. each mail of a burst stored): the cumulative count as a step."""
    if not values:
        return None
    vals = sorted(values)
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    ax.step([0, *vals], range(len(vals) + 1), where="post", color=NEUTRAL)
    ax.scatter(vals, range(1, len(vals) + 1), s=8, color=NEUTRAL, zorder=3)
    _target(ax, target, "max", vertical=True, span=vals[-1])
    ax.set_xlim(left=0)
    ax.set_ylim(0, len(vals) * 1.05)
    ax.set_xlabel(f"{unit or 's'} since the start")
    ax.set_ylabel("done")
    ax.set_title(title, loc="left")
    return to_svg(fig)


def bars(items: list[tuple[str, float]], *, title: str, unit: str, target: float | None):
    """Horizontal bars (e.g. recovery seconds per service), red where over the target."""
    if not items:
        return None
    items = sorted(items, key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.28 * len(items)))
    span = max(v for _, v in items)
    colours = [BAD if target is not None and v > target else OK for _, v in items]
    ax.barh([k for k, _ in items], [v for _, v in items], color=colours, height=0.6)
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:.3g}", va="center", fontsize=8)
    _target(ax, target, "max", vertical=True, span=span)
    ax.set_xlim(left=0)
    ax.set_xlabel(unit or "value")
    ax.set_title(title, loc="left")
    return to_svg(fig)


def trends(series: list[dict], *, cols: int = 4) -> str | None:
    """Small multiples, one per measured requirement: its value in every run that measured it,
    the target dashed, the stored baseline dotted, the last point red (and ▲ in the title) when
    it regressed against the previous run or the baseline.

    series: [{"id", "unit", "points": [(run label, value)], "target", "bound", "regressed"}]"""
    series = [s for s in series if s["points"]]
    if not series:
        return None
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.8, 1.55 * rows), squeeze=False)
    for ax in axes.flat[len(series) :]:
        ax.set_visible(False)
    for ax, s in zip(axes.flat, series, strict=False):
        ys = [v for _, v in s["points"]]
        xs = range(len(ys))
        ax.plot(xs, ys, marker="o", markersize=3, color=NEUTRAL, linewidth=1)
        if s.get("baseline") is not None:
            ax.axhline(s["baseline"], color=NEUTRAL, linestyle=":", linewidth=1)
        if s["regressed"] or s.get("regressed_from_baseline"):
            ax.plot([xs[-1]], [ys[-1]], marker="o", markersize=6, color=BAD)
        if s["target"] is not None:
            lo, hi = min(ys), max(ys)
            if lo * 0.5 <= s["target"] <= hi * 2 or lo == hi == 0:
                ax.axhline(s["target"], color=TARGET, linestyle="--", linewidth=1)
        ax.set_title(
            s["id"] + (" ▲" if s["regressed"] or s.get("regressed_from_baseline") else ""),
            fontsize=8,
            loc="left",
            color=BAD if s["regressed"] or s.get("regressed_from_baseline") else "black",
        )
        if s["unit"]:
            ax.set_ylabel(s["unit"], fontsize=7)
        ax.set_xticks(
            [xs[0], xs[-1]] if len(ys) > 1 else [0],
            [s["points"][0][0], s["points"][-1][0]] if len(ys) > 1 else [s["points"][0][0]],
            fontsize=6,
        )
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout(h_pad=0.8, w_pad=0.6)
    return to_svg(fig)
