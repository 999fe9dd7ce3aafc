"""Availability over a window Prometheus may not hold in full (SLA-AV1..AV3).

The targets are monthly (30 days). With less history the verdict never claims the month:

- the downtime seen so far already exceeds the month's budget ((100 - target) % of 30 d):
  fail, whatever the rest of the month brings;
- otherwise: provisional, with the share seen so far, the projection for 30 days at this rate,
  and how much of the downtime budget is used;
- with 30 days or more: the share is judged against the target as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from stackcheck.evidence.verdicts import FAIL, PASS, PROVISIONAL

MONTH_S = 30 * 86400.0


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.3g} d"


@dataclass(frozen=True)
class Judgement:
    value: float | str  # the share in % when the window is full, else a sentence
    verdict: str
    text: str  # one line for the evidence: share, window, projection, budget


def judge(share: float, seen_s: float, target_pct: float, *, window_s: float = MONTH_S):
    """share: available fraction (0..1) over `seen_s` seconds of recorded history."""
    pct = 100.0 * share
    down_s = (1.0 - share) * seen_s
    budget_s = (1.0 - target_pct / 100.0) * window_s
    used = f"downtime {duration(down_s)} of the {duration(budget_s)} budget"
    if seen_s >= window_s:
        verdict = PASS if pct >= target_pct else FAIL
        text = f"{pct:.3f} % over {duration(seen_s)} ({used})"
        return Judgement(round(pct, 4), verdict, text)
    best = 100.0 * (1.0 - down_s / window_s)  # if the rest of the window has no downtime
    seen = f"{pct:.3f} % over {duration(seen_s)} of {duration(window_s)}"
    if down_s > budget_s:
        text = (
            f"{seen}: {used} already, so at most {best:.3f} % for {duration(window_s)} "
            f"whatever follows"
        )
        return Judgement(f"{seen}; budget spent: at most {best:.3f} %", FAIL, text)
    text = (
        f"{seen} (provisional: {duration(window_s)} not yet seen); projection for "
        f"{duration(window_s)} at this rate {pct:.3f} %; {used}"
    )
    return Judgement(f"{seen}; projection {pct:.3f} %", PROVISIONAL, text)
