"""Secret rotation the Swarm way (issue 15, S8): `./run rotate NAME --swarm` during a burst of
mail. The new value is applied at PostgreSQL, a new Docker secret version is created, the
reader (ecom-mailer) is rolled start-first, the old version is removed, and no mail is lost or
stored twice. Needs `./run deploy swarm` and --stack=swarm."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stackcheck.mailflow import PROFILES
from stackcheck.ops import swarm
from stackcheck.waits import wait_for

pytestmark = [pytest.mark.swarm, pytest.mark.recovery, pytest.mark.disrupts, pytest.mark.e2e]


def _counts(db, sent) -> dict[str, int]:
    rows = db.query(
        "SELECT message_id, count(*) FROM emails WHERE message_id = ANY(%s) GROUP BY message_id",
        ([s.message_id for s in sent],),
    )
    return dict(rows)


@pytest.mark.req("S8", "E4")
def test_rotation_rolls_the_reader_without_losing_mail(stack, mail, ecom_db, ollama, sla):
    if ollama is None:
        pytest.skip("needs the Ollama double to pace the burst; a real Ollama is configured")
    ns = stack.config.project
    before = swarm.latest_versions(swarm.secret_names())
    ollama.control(delay_s=0.3)  # the burst outlasts the roll's start
    try:
        sent = [
            mail.mail(
                PROFILES["ecom"], f"Rotation {i}", f"Rotation {i}", sender=f"rot{i}@example.org"
            )
            for i in range(30)
        ]
        proc = subprocess.run(
            [sys.executable, "-m", "stackcheck.ops.secret_rotation", "ecom_db_password", "--swarm"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        counts, took = wait_for(
            lambda: _counts(ecom_db, sent),
            timeout=180,
            interval=0.5,
            ok=lambda c: len(c) == len(sent),
            what="all 30 mails of the burst stored",
        )
    finally:
        ollama.control(delay_s=0)
    assert all(n == 1 for n in counts.values()), {k: v for k, v in counts.items() if v != 1}
    after = swarm.latest_versions(swarm.secret_names())
    for name in ("ecom_db_password", "ecom_mailer_db_password"):
        assert after[name] == before[name] + 1, (name, before[name], after[name])
    names = set(swarm.secret_names())
    old = f"ecom_mailer_db_password_v{before['ecom_mailer_db_password']}"
    assert old not in names, f"{old} is still there: not removed after the roll"
    mounted = {r["SecretName"] for r in swarm.service_secrets(ns, "ecom-mailer")}
    assert f"ecom_mailer_db_password_v{after['ecom_mailer_db_password']}" in mounted, mounted
    # the rolled mailer reads the new value and works with it (a new connection, new mail)
    svc = stack.service("ecom-mailer")
    svc.wait_healthy(timeout=sla.threshold("SLA-R2").value)
    value = svc.exec(["cat", "/run/secrets/ecom_mailer_db_password"]).output.strip()
    assert value == stack.secret("ecom_db_password")
    probe = mail.mail(
        PROFILES["ecom"], "after rotation", "after rotation", sender="rot-after@example.org"
    )
    ecom_db.wait_stored(probe, timeout=60)
    sla.record(
        "S8",
        took,
        unit="s",
        how="Swarm: ecom_db_password rotated during a 30-mail burst (new Docker secret "
        "version, ecom-mailer rolled start-first, old version removed); seconds until all 30 "
        "were stored, each once",
    )
