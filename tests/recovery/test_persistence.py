"""T8: data survives `docker compose down` and `up` (named volumes persist)."""

import uuid

import pytest

pytestmark = [pytest.mark.recovery, pytest.mark.needs("postgres", "redis")]


@pytest.mark.req("T8", "SLA-R3")
def test_data_survives_down_and_up(stack, sla):
    marker = uuid.uuid4().hex
    with stack.service("postgres").connect() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS stackcheck_t8 (marker text PRIMARY KEY, "
            "written timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO stackcheck_t8 (marker) VALUES (%s)", (marker,))
        conn.commit()
        dbs_before = {
            r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
        }
    r = stack.service("redis").client()
    r.set(f"stackcheck:t8:{marker}", marker)
    r.close()

    stack.down()
    cold = sla.threshold("SLA-R3")
    took = stack.up(timeout=cold.value)

    with stack.service("postgres").connect() as conn:
        dbs_after = {
            r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
        }
        kept = conn.execute(
            "SELECT count(*) FROM stackcheck_t8 WHERE marker = %s", (marker,)
        ).fetchone()[0]
    r = stack.service("redis").client()
    redis_kept = r.get(f"stackcheck:t8:{marker}")
    r.close()

    assert dbs_after == dbs_before, (
        f"databases before {sorted(dbs_before)}, after {sorted(dbs_after)}"
    )
    assert kept == 1, "the marker row written before `down` is gone"
    assert redis_kept == marker, "the redis key written before `down` is gone (AOF not persisted?)"
    sla.record(
        "T8",
        f"{len(dbs_after)} databases, marker row and redis key kept",
        how=f"wrote a row and a redis key, `docker compose down` (volumes kept), "
        f"`up --wait`; databases {', '.join(sorted(dbs_after))}",
    )
    sla.check(
        "SLA-R3",
        took,
        how=f"`docker compose up --wait` of all {len(stack.defined)} services after "
        "`down` (containers recreated; images and volumes kept)",
    )
