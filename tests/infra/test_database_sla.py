"""SLA-DB1: the mailers' standard queries answer within 100 ms; SLA-DB2: connections in use stay
below 50 and every client's pool is bounded."""

from __future__ import annotations

import statistics
import time

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.needs("postgres"), pytest.mark.reads]

# the queries a mailer runs per mail (store.py): duplicate guard, Message-ID guard, outbox scan
STANDARD = {
    "stored?": "SELECT 1 FROM emails WHERE source = %s AND source_id = %s",
    "message-id": "SELECT id, fingerprint FROM emails WHERE message_id = %s",
    "outbox due": "SELECT id FROM outbox WHERE status IN ('pending', 'sending') "
    "AND next_attempt_at <= now() ORDER BY id LIMIT 10",
    "latest": "SELECT id, subject, received_at FROM emails ORDER BY id DESC LIMIT 20",
}
PARAMS = {"stored?": ("pop3://mailpit:1110", "no-such-id"), "message-id": ("no@such.id",)}


@pytest.mark.req("SLA-DB1")
@pytest.mark.needs("praxis-mailer")
def test_standard_queries_under_100_ms(stack, sla):
    with stack.service("postgres").connect(
        "praxis", user="praxis", password_secret="praxis_db_password"
    ) as conn:
        rows = conn.execute("SELECT count(*) FROM emails").fetchone()[0]
        samples: dict[str, list[float]] = {name: [] for name in STANDARD}
        for _ in range(20):
            for name, sql in STANDARD.items():
                start = time.perf_counter()
                conn.execute(sql, PARAMS.get(name, ())).fetchall()
                samples[name].append((time.perf_counter() - start) * 1000)
    p95 = {n: statistics.quantiles(v, n=20)[-1] for n, v in samples.items()}
    worst = max(p95, key=p95.get)
    sla.check(
        "SLA-DB1",
        p95[worst],
        how=f"p95 of 20 runs each over psycopg on the loopback port, {rows} mails in praxis: "
        + ", ".join(f"{n} {v:.1f} ms" for n, v in p95.items()),
    )


@pytest.mark.req("SLA-DB2", "H5")
def test_connections_in_use_and_pools_bounded(stack, sla):
    with stack.service("postgres").connect() as conn:
        in_use = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchone()[0]
        max_conn = int(conn.execute("SHOW max_connections").fetchone()[0])
    pools = {}
    for name in ("praxis-mailer", "ecom-mailer"):
        if stack.has(name):
            env = stack.service(name).env
            pools[name] = int(env.get("DB_POOL_MAX", "0"))
    assert all(0 < p <= 20 for p in pools.values()), f"unbounded pools: {pools}"
    assert sum(pools.values()) < max_conn
    sla.check(
        "SLA-DB2",
        in_use,
        how=f"client backends in pg_stat_activity (max_connections {max_conn}); "
        f"pool limits {pools}",
    )
