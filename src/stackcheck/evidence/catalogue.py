"""The requirement catalogue (docs/REQUIREMENTS.md), parsed so tests can only cite real IDs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_ROW = re.compile(r"^\|\s*(?P<id>[A-Z]+(?:-[A-Z]+)?\d+)\s*\|\s*(?P<text>.+?)\s*\|\s*$")
_HEADING = re.compile(r"^##\s+(?P<title>.+?)\s*$")


@dataclass(frozen=True)
class Requirement:
    id: str
    group: str
    text: str


class Catalogue:
    """Ordered requirement IDs with their group heading and text."""

    def __init__(self, requirements: list[Requirement]):
        self._by_id = {r.id: r for r in requirements}
        if len(self._by_id) != len(requirements):
            seen: set[str] = set()
            dupes = sorted({r.id for r in requirements if r.id in seen or seen.add(r.id)})
            raise ValueError(f"requirement catalogue lists IDs twice: {', '.join(dupes)}")

    @classmethod
    def parse(cls, text: str) -> Catalogue:
        group = ""
        found: list[Requirement] = []
        for line in text.splitlines():
            if m := _HEADING.match(line):
                group = m["title"]
            elif m := _ROW.match(line):
                found.append(Requirement(m["id"], group, m["text"]))
        if not found:
            raise ValueError("requirement catalogue has no '| ID | requirement |' rows")
        return cls(found)

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        return cls.parse(path.read_text(encoding="utf-8"))

    def __contains__(self, rid: object) -> bool:
        return rid in self._by_id

    def __iter__(self):
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __getitem__(self, rid: str) -> Requirement:
        return self._by_id[rid]

    def ids(self) -> list[str]:
        return list(self._by_id)
