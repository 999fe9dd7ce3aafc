"""Redis: a client on the published loopback port, with the password from its secret."""

from __future__ import annotations

import redis as redis_lib

from stackcheck.services.base import Service


class Redis(Service):
    def client(self) -> redis_lib.Redis:
        port = self.port(6379)
        return redis_lib.Redis(
            host=port.host,
            port=port.port,
            socket_timeout=10,
            decode_responses=True,
            password=self.secret("redis_password"),
        )
