"""What `./run rotate` touches, decided from the compose model before anything changes."""

from __future__ import annotations

import base64
import re

import pytest

from stackcheck.ops.secret_rotation import RotationRefused, plan, scram_sha256

pytestmark = [pytest.mark.unit, pytest.mark.req("S8")]

MODEL = {
    "services": {
        "postgres": {
            "secrets": [{"source": "postgres_password"}, {"source": "praxis_db_password"}]
        },
        "praxis-mailer": {"secrets": [{"source": "praxis_mailer_db_password"}]},
        "ecom-mailer": {"secrets": [{"source": "ecom_mailer_redis_password"}]},
        "redis": {"secrets": [{"source": "redis_password"}, {"source": "redis_acl"}]},
        "backup": {"secrets": [{"source": "backup_db_password"}]},
        "mailpit": {"secrets": [{"source": "mailpit_pop3_auth"}, {"source": "mailpit_smtp_auth"}]},
        "alertmanager": {"secrets": [{"source": "alertmanager_smtp_password"}]},
        "prometheus": {},
    }
}


def test_a_database_password_restarts_its_readers_not_postgres():
    p = plan("praxis_db_password", MODEL)
    assert p.files == ("praxis_db_password", "praxis_mailer_db_password")
    assert p.services == ("praxis-mailer",)  # postgres reads it only when initialising


def test_the_superuser_password_reaches_the_backup_job():
    assert plan("postgres_password", MODEL).services == ("backup",)


def test_redis_password_rewrites_the_acl_only():
    # the mailers have Redis users of their own: the administrator's password is not theirs
    p = plan("redis_password", MODEL)
    assert set(p.files) == {"redis_password", "redis_acl"}
    assert p.services == ("redis",)


def test_a_mailer_redis_password_is_rotated_for_its_own_user():
    p = plan("ecom_mailer_redis_password", MODEL)
    assert set(p.files) == {"ecom_mailer_redis_password", "redis_acl"}
    assert p.services == ("ecom-mailer", "redis")


def test_a_mail_password_restarts_the_mail_server_with_its_auth_file():
    # one password for reading and sending (issue 11): both of the mail server's auth files
    p = plan("praxis_pop3_password", MODEL)
    assert p.files == ("praxis_pop3_password", "mailpit_pop3_auth", "mailpit_smtp_auth")
    assert p.services == ("mailpit",)


def test_alertmanagers_smtp_password_restarts_it_and_the_mail_server():
    p = plan("alertmanager_smtp_password", MODEL)
    assert p.files == ("alertmanager_smtp_password", "mailpit_smtp_auth")
    assert p.services == ("alertmanager", "mailpit")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("praxis_mailer_db_password", "derived from praxis_db_password"),
        ("redis_acl", "derived from redis_password"),
        ("n8n_encryption_key", "unreadable"),
        ("minio_kms_key", "unreadable"),
        ("nope", "no secret 'nope'"),
    ],
)
def test_refused_before_anything_changes(name, why):
    with pytest.raises(RotationRefused, match=re.escape(why)):
        plan(name, MODEL)


def test_scram_verifier_has_postgres_shape_and_depends_on_salt():
    v = scram_sha256("pencil", salt=b"0123456789abcdef")
    m = re.fullmatch(
        r"SCRAM-SHA-256\$4096:([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)", v
    )
    assert m, v
    assert base64.b64decode(m.group(1)) == b"0123456789abcdef"
    assert len(base64.b64decode(m.group(2))) == len(base64.b64decode(m.group(3))) == 32
    assert v == scram_sha256("pencil", salt=b"0123456789abcdef")
    assert v != scram_sha256("pencil", salt=b"fedcba9876543210")
    assert scram_sha256("pencil") != scram_sha256("pencil")  # a fresh salt each time
