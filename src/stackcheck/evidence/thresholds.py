"""SLA thresholds from fixtures/sla.yml: the one place a number of the contract lives."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path

import yaml

from stackcheck.evidence.catalogue import Catalogue

_COMPARE = {"max": operator.le, "min": operator.ge}
_SYMBOL = {"max": "≤", "min": "≥"}


@dataclass(frozen=True)
class Threshold:
    """A target: `bound` is "max" (measured ≤ value) or "min" (measured ≥ value), or None for
    a target that is a statement rather than a number."""

    id: str
    target: str
    bound: str | None = None
    value: float | None = None
    unit: str = ""

    def met_by(self, measured: float) -> bool:
        if self.bound is None or self.value is None:
            raise ValueError(f"{self.id} has no numeric target to compare {measured} with")
        return _COMPARE[self.bound](measured, self.value)

    def describe(self) -> str:
        if self.bound is None:
            return self.target
        unit = f" {self.unit}" if self.unit else ""
        return f"{_SYMBOL[self.bound]} {self.value:g}{unit}"


class ThresholdError(ValueError):
    """fixtures/sla.yml is malformed or names an ID the catalogue lacks."""


def parse(data: object, catalogue: Catalogue | None = None) -> dict[str, Threshold]:
    if not isinstance(data, dict):
        raise ThresholdError("sla.yml must map requirement IDs to targets")
    out: dict[str, Threshold] = {}
    for rid, spec in data.items():
        if catalogue is not None and rid not in catalogue:
            raise ThresholdError(f"sla.yml: {rid!r} is not in the requirement catalogue")
        if not isinstance(spec, dict) or not isinstance(spec.get("target"), str):
            raise ThresholdError(f"sla.yml: {rid} needs a 'target' text")
        bounds = [b for b in ("max", "min") if b in spec]
        if len(bounds) > 1:
            raise ThresholdError(f"sla.yml: {rid} has both 'max' and 'min'")
        bound = bounds[0] if bounds else None
        value = None
        if bound:
            raw = spec[bound]
            # bool is an int in Python: `max: yes` must not become the bound 1.0
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ThresholdError(f"sla.yml: {rid}.{bound} must be a number, not {raw!r}")
            value = float(raw)
        unknown = set(spec) - {"target", "max", "min", "unit"}
        if unknown:
            raise ThresholdError(f"sla.yml: {rid} has unknown keys {sorted(unknown)}")
        out[rid] = Threshold(rid, spec["target"], bound, value, str(spec.get("unit", "")))
    return out


def load(path: Path, catalogue: Catalogue | None = None) -> dict[str, Threshold]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ThresholdError(f"threshold file {path} is missing") from None
    return parse(data, catalogue)
