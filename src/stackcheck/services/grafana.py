"""Grafana: its HTTP API as the admin, and a shell on its network (Loki's only client)."""

from __future__ import annotations

import httpx

from stackcheck.services.base import Service

PORT = 3000


class Grafana(Service):
    def client(self) -> httpx.Client:
        """The HTTP API, logged in as admin with the password from its secret."""
        password = self.secret("grafana_admin_password")
        return self.http(PORT, auth=("admin", password))
