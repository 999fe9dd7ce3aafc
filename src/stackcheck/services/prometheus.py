"""Prometheus: its HTTP API on the published loopback port, and instant queries."""

from __future__ import annotations

import httpx

from stackcheck.services.base import Service

PORT = 9090


def query(client: httpx.Client, expr: str) -> list[dict]:
    """An instant query's result vector; fails the test on any error of Prometheus (a bad
    expression, a server error), naming the expression."""
    res = client.post("/api/v1/query", data={"query": expr})
    try:
        body = res.json()
    except ValueError:
        body = {"status": "error", "error": f"HTTP {res.status_code}: {res.text[:300]}"}
    assert res.status_code == 200 and body.get("status") == "success", f"{expr}: {body}"
    return body["data"]["result"]


def scalar(client: httpx.Client, expr: str) -> float | None:
    """The first sample's value, None for an empty result."""
    result = query(client, expr)
    return float(result[0]["value"][1]) if result else None


class Prometheus(Service):
    def client(self) -> httpx.Client:
        """The HTTP API (the caller closes it: `with prometheus.client() as prom`)."""
        return self.http(PORT)

    def query(self, expr: str) -> list[dict]:
        """One instant query on a client of its own."""
        with self.client() as client:
            return query(client, expr)
