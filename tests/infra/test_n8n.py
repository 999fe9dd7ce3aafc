"""n8n: up, migrated and backed by PostgreSQL (its readiness endpoint checks the database)."""

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.needs("n8n"), pytest.mark.reads]


@pytest.mark.req("T1", "H4")
def test_n8n_ready_on_postgres(stack, sla):
    with stack.service("n8n").http(5678) as http:
        alive = http.get("/healthz")
        ready = http.get("/healthz/readiness")
    assert alive.status_code == 200, alive.text[:300]
    assert ready.status_code == 200, ready.text[:300]
    with stack.service("postgres").connect(
        "n8n", user="n8n", password_secret="n8n_db_password"
    ) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
    assert tables > 10, f"n8n's schema has {tables} tables: not migrated into PostgreSQL"
    sla.record(
        "H4",
        f"n8n ready with {tables} tables in database n8n",
        how="GET /healthz/readiness on the loopback port; n8n starts only after "
        "postgres is healthy (depends_on: service_healthy)",
    )
