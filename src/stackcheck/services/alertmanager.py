"""Alertmanager: it publishes no port; its API is read from inside its container (the image
carries wget and amtool)."""

from __future__ import annotations

import json

from stackcheck.services.base import Service

LOCAL = "http://localhost:9093"


class Alertmanager(Service):
    def get(self, path: str) -> str:
        """GET a path of its HTTP API from inside the container; fails the test on an error."""
        res = self.exec(["wget", "-qO-", f"{LOCAL}{path}"])
        assert res.exit_code == 0, f"{self.name}: wget {path} failed: {res.output[-500:]}"
        return res.output

    def alerts(self) -> list[dict]:
        """Every alert it holds, active or silenced (API v2)."""
        return json.loads(self.get("/api/v2/alerts?active=true&silenced=true"))

    def notifications_total(self) -> float:
        """Notifications sent so far, over every integration (its own metrics)."""
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in self.get("/metrics").splitlines()
            if line.startswith("alertmanager_notifications_total")
        )

    def add_alert(self, labels: dict[str, str], *, end: str, summary: str) -> None:
        """Post an alert with amtool, as an operator would; `end` is RFC 3339."""
        res = self.exec(
            [
                "amtool", f"--alertmanager.url={LOCAL}", "alert", "add",
                *(f"{k}={v}" for k, v in labels.items()),
                f"--annotation=summary={summary}", f"--end={end}",
            ]
        )  # fmt: skip
        assert res.exit_code == 0, res.output
