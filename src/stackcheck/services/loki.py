"""Loki: it publishes no port and its distroless image has no client, so it is queried from the
Grafana container, the data source's own path."""

from __future__ import annotations

import json

from stackcheck.services.base import Service


class Loki(Service):
    def query(self, logql: str, *, since: str = "1h", limit: int = 100) -> list[dict]:
        """A range query's result (streams or matrix); fails the test on any error."""
        res = self.engine.sibling("grafana").exec(
            [
                "curl", "-fsS", "-G", f"http://{self.name}:3100/loki/api/v1/query_range",
                "--data-urlencode", f"query={logql}",
                "--data-urlencode", f"since={since}",
                "--data-urlencode", f"limit={limit}",
            ]
        )  # fmt: skip
        assert res.exit_code == 0, f"Loki query {logql!r} failed: {res.output}"
        body = json.loads(res.output)
        assert body["status"] == "success", body
        return body["data"]["result"]
