"""PostgreSQL: connections as the superuser or as an application's role, and a mailer profile's
database (the rows a mailer commits)."""

from __future__ import annotations

import time

import psycopg
from psycopg.rows import dict_row

from stackcheck.mailflow import Sent
from stackcheck.services.base import Service
from stackcheck.waits import wait_for


class Postgres(Service):
    def connect(
        self,
        dbname: str = "postgres",
        *,
        user: str = "postgres",
        password_secret: str = "postgres_password",
        connect_timeout: int = 10,
    ) -> psycopg.Connection:
        """A connection over the published loopback port, with the role's password from its
        secret (read at each call: a rotation changes it)."""
        port = self.port(5432)
        return psycopg.connect(
            host=port.host,
            port=port.port,
            dbname=dbname,
            user=user,
            password=self.secret(password_secret),
            connect_timeout=connect_timeout,
            application_name="stackcheck",
        )

    def profile(self, profile: str) -> ProfileDB:
        """A mailer profile's database, as its own role."""
        return ProfileDB(self, profile)


class ProfileDB:
    """The database of one mailer profile (praxis, ecom): what the mailer committed."""

    def __init__(self, postgres: Postgres, profile: str):
        self.postgres, self.profile = postgres, profile

    def connect(self) -> psycopg.Connection:
        return self.postgres.connect(
            self.profile, user=self.profile, password_secret=f"{self.profile}_db_password"
        )

    def rows(self, message_id: str) -> list[dict]:
        with self.connect() as conn:
            conn.row_factory = dict_row
            return conn.execute(
                "SELECT * FROM emails WHERE message_id = %s", (message_id,)
            ).fetchall()

    def wait_stored(self, sent: Sent, timeout: float) -> tuple[dict, float]:
        """Poll (every 50 ms) until the mail's row is committed; return it and the seconds from
        the end of the SMTP submission to the first poll that saw it."""
        rows, _ = wait_for(
            lambda: self.rows(sent.message_id),
            timeout=timeout,
            interval=0.05,
            what=f"mail {sent.message_id} in database {self.profile}",
        )
        return rows[0], time.monotonic() - sent.at

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()
