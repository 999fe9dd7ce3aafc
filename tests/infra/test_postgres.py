"""T2: PostgreSQL accepts authenticated connections (and refuses wrong passwords)."""

import time

import psycopg
import pytest

pytestmark = [pytest.mark.infra, pytest.mark.needs("postgres"), pytest.mark.reads]


@pytest.mark.req("T2")
def test_authenticated_connection_answers_select_version(stack, sla):
    start = time.monotonic()
    with stack.service("postgres").connect() as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
    took_ms = (time.monotonic() - start) * 1000
    assert version.startswith("PostgreSQL "), version
    sla.record(
        "T2",
        version.split(" on ")[0],
        how=f"psycopg over the published loopback port, password from the secret file; "
        f"connect + SELECT version() took {took_ms:.0f} ms",
    )


@pytest.mark.req("T2")
def test_wrong_password_is_refused(stack):
    """Authentication is real (scram-sha-256), not `trust`."""
    port = stack.service("postgres").port(5432)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=port.host,
            port=port.port,
            dbname="postgres",
            user="postgres",
            password="not-the-password",
            connect_timeout=10,
        )


@pytest.mark.req("T2")
@pytest.mark.parametrize("app", ["praxis", "ecom", "n8n"])
def test_each_application_role_reaches_its_own_database(stack, app):
    """Each application has its own role and password (a secret file) and owns its database."""
    with stack.service("postgres").connect(
        app, user=app, password_secret=f"{app}_db_password"
    ) as conn:
        db, user = conn.execute("SELECT current_database(), current_user").fetchone()
    assert (db, user) == (app, app)
