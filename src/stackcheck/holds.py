"""Services a running test holds down on purpose (the stopped exporter of the alert test), shared
by the workers of one run through a file: while a background test waits with a service stopped,
a test beside it that asks "is every service healthy?" means every service nobody holds down.
The holder answers for its services: it starts them again and waits for them to be healthy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock


class Holds:
    def __init__(self, path: Path):
        self.path = path
        self._lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=60)

    def held(self) -> dict[str, str]:
        """Service -> the test holding it down."""
        try:
            return json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}

    @contextmanager
    def hold(self, services: tuple[str, ...], by: str) -> Iterator[None]:
        """Mark `services` held down by test `by` until the block ends (however it ends)."""
        self._update(lambda held: held.update(dict.fromkeys(services, by)))
        try:
            yield
        finally:
            self._update(lambda held: [held.pop(s, None) for s in services])

    def _update(self, change) -> None:
        with self._lock:
            held = self.held()
            change(held)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(held), encoding="utf-8")
            tmp.replace(self.path)
