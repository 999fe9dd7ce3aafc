"""S8: `./run rotate` gives a secret a new value that works everywhere at once: the old value is
refused by the server that checked it, the new one accepted, and the services that read it are
healthy and still do their work (a mail is stored after each rotation)."""

from __future__ import annotations

import os
import poplib
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
import redis

from stackcheck.mailflow import PROFILES

pytestmark = [
    pytest.mark.recovery,
    pytest.mark.needs("postgres", "redis", "mailpit", "praxis-mailer", "ecom-mailer"),
]


Run = tuple[subprocess.CompletedProcess, float]


def rotate(stack, *args: str, stdin: str | None = None) -> Run:
    env = {
        **os.environ,
        "STACKCHECK_PROJECT": stack.config.project,
        "STACKCHECK_OFFLINE": "1" if stack.config.offline else "0",
    }
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "stackcheck.ops.secret_rotation", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    return proc, time.monotonic() - start


def still_works(mail, db, profile: str) -> None:
    sent = mail.mail(PROFILES[profile], f"after rotation {uuid.uuid4().hex[:6]}", "Hallo")
    db.wait_stored(sent, timeout=60)


@pytest.mark.req("S8")
def test_database_password_rotation(stack, mail, praxis_db, sla):
    old = stack.secret("praxis_db_password")
    proc, took = rotate(stack, "praxis_db_password")
    assert proc.returncode == 0, proc.stderr
    new = stack.secret("praxis_db_password")
    assert new != old
    assert stack.secret("praxis_mailer_db_password", service="praxis-mailer") == new
    port = stack.service("postgres").port(5432)
    login = dict(host=port.host, port=port.port, dbname="praxis", user="praxis", connect_timeout=10)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**login, password=old).close()
    psycopg.connect(**login, password=new).close()
    still_works(mail, praxis_db, "praxis")
    sla.record(
        "S8",
        took,
        unit="s",
        how="./run rotate praxis_db_password: new SCRAM verifier, file and derived copy written, "
        "praxis-mailer restarted until healthy; old password refused, a mail stored after",
    )


@pytest.mark.req("S8")
def test_mail_app_password_rotation_on_breach(stack, mail, praxis_db, sla):
    """The provider issues the new app password; the operator pipes it in (--stdin)."""
    old = stack.secret("praxis_pop3_password", service="praxis-mailer")
    issued = f"app-{uuid.uuid4().hex}"
    proc, took = rotate(stack, "praxis_pop3_password", "--stdin", stdin=issued + "\n")
    assert proc.returncode == 0, proc.stderr
    assert stack.secret("praxis_pop3_password", service="praxis-mailer") == issued
    port = stack.service("mailpit").port(1110)
    for password, accepted in ((old, False), (issued, True)):
        conn = poplib.POP3_SSL(
            port.host, port.port, timeout=15, context=stack.service("mailpit").tls()
        )
        try:
            conn.user("praxis")
            if accepted:
                conn.pass_(password)
            else:
                with pytest.raises(poplib.error_proto):
                    conn.pass_(password)
        finally:
            conn.close()
    still_works(mail, praxis_db, "praxis")
    sla.record(
        "S8",
        took,
        unit="s",
        how="./run rotate praxis_pop3_password --stdin (the provider's new app password): mail "
        "server and praxis-mailer restarted; old password refused over POP3, a mail stored after",
    )


@pytest.mark.req("S8")
def test_redis_password_rotation(stack, mail, praxis_db, ecom_db, sla):
    old = stack.secret("redis_password", service="redis")
    proc, took = rotate(stack, "redis_password")
    assert proc.returncode == 0, proc.stderr
    new = stack.secret("redis_password", service="redis")
    port = stack.service("redis").port(6379)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=port.host, port=port.port, password=old, socket_timeout=10).ping()
    assert redis.Redis(host=port.host, port=port.port, password=new, socket_timeout=10).ping()
    still_works(mail, praxis_db, "praxis")
    still_works(mail, ecom_db, "ecom")
    sla.record(
        "S8",
        took,
        unit="s",
        how="./run rotate redis_password (the administrator, user default): ACL hash set, ACL "
        "file re-derived, redis restarted; old password refused, both mailers still store mail",
    )


@pytest.mark.req("S8")
def test_mailer_redis_password_rotation(stack, mail, praxis_db, ecom_db, sla):
    """A mailer's own Redis user: the other mailer's user is untouched."""
    old = stack.secret("ecom_mailer_redis_password", service="ecom-mailer")
    proc, took = rotate(stack, "ecom_mailer_redis_password")
    assert proc.returncode == 0, proc.stderr
    new = stack.secret("ecom_mailer_redis_password", service="ecom-mailer")
    assert new != old
    port = stack.service("redis").port(6379)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(
            host=port.host, port=port.port, username="ecom", password=old, socket_timeout=10
        ).ping()
    assert redis.Redis(
        host=port.host, port=port.port, username="ecom", password=new, socket_timeout=10
    ).ping()
    still_works(mail, ecom_db, "ecom")
    still_works(mail, praxis_db, "praxis")
    sla.record(
        "S8",
        took,
        unit="s",
        how="./run rotate ecom_mailer_redis_password: ACL SETUSER ecom, ACL file re-derived, "
        "redis and ecom-mailer restarted; old password refused, both mailers store mail",
    )


@pytest.mark.req("S8")
def test_keys_and_derived_copies_are_refused(stack):
    for name, why in (
        ("n8n_encryption_key", "unreadable"),
        ("praxis_mailer_db_password", "rotate that"),
        ("no_such_secret", "no secret"),
    ):
        proc, _ = rotate(stack, name)
        assert proc.returncode == 2 and why in proc.stderr, (name, proc.returncode, proc.stderr)
