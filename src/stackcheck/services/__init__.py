"""One handle per kind of service in the stack, on one base (`base.Service`), registered in one
table: adding a service with clients of its own is a module here and a line in HANDLES; a
service not in it gets the base handle (ports, exec, logs, health, lifecycle, inspect)."""

from __future__ import annotations

from functools import cache

from stackcheck.services.alertmanager import Alertmanager
from stackcheck.services.backup import Backup
from stackcheck.services.base import Engine, Service, ServiceError, SwarmService
from stackcheck.services.grafana import Grafana
from stackcheck.services.loki import Loki
from stackcheck.services.mailer import Mailer
from stackcheck.services.mailserver import MailServer
from stackcheck.services.ollama import Ollama
from stackcheck.services.postgres import Postgres
from stackcheck.services.prometheus import Prometheus
from stackcheck.services.redis import Redis

# compose service name -> its handle
HANDLES: dict[str, type[Service]] = {
    "postgres": Postgres,
    "redis": Redis,
    "mailpit": MailServer,
    "praxis-mailer": Mailer,
    "ecom-mailer": Mailer,
    "backup": Backup,
    "prometheus": Prometheus,
    "alertmanager": Alertmanager,
    "grafana": Grafana,
    "loki": Loki,
    "ollama": Ollama,
}

__all__ = ["HANDLES", "Engine", "Service", "ServiceError", "SwarmService", "handle", "handle_class"]


@cache
def handle_class(name: str, swarm: bool = False) -> type[Service]:
    """The handle class of a service: its kind's (the base for a name not in HANDLES), with
    SwarmService's way of finding task containers mixed in for a Swarm stack."""
    kind = HANDLES.get(name, Service)
    if not swarm:
        return kind
    if kind is Service:
        return SwarmService
    return type(f"Swarm{kind.__name__}", (SwarmService, kind), {})


def handle(engine: Engine, name: str) -> Service:
    """A new handle of service `name` on this engine."""
    return handle_class(name, engine.swarm)(engine, name)
