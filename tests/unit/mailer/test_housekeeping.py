"""Housekeeping (M7) deletes what has a retention and nothing else: quarantine after 30 days,
attachments only where a local retention is set, never raw mails or the spool."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from mailer.config import load_config
from mailer.housekeeping import next_run, run_once

pytestmark = [pytest.mark.unit, pytest.mark.req("M7")]

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def storage(tmp_path):
    """The storage section (all housekeeping reads), its data directory in tmp_path."""
    (tmp_path / "pw").write_text("x")
    env = {
        "MAILER_PROFILE": "ecom",
        "MAILER_ADDRESSES": "ecom@example.com",
        "SOURCE_PROTOCOL": "pop3s",
        "SOURCE_HOST": "mailpit",
        "SOURCE_USER": "ecom",
        "SOURCE_PASSWORD_FILE": str(tmp_path / "pw"),
        "REDIS_HOST": "redis",
        "REDIS_PASSWORD_FILE": str(tmp_path / "pw"),
        "DB_HOST": "postgres",
        "DB_PASSWORD_FILE": str(tmp_path / "pw"),
        "CLAMD_HOST": "clamav",
        "SMTP_HOST": "mailpit",
        "SMTP_FROM": "ecom@example.com",
        "STAFF_ADDRESS": "orders@example.com",
    }
    return replace(load_config(env).storage, data_dir=tmp_path / "data")


def put(storage, rel: str, age_days: float) -> None:
    path = storage.data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 10)
    t = (NOW - timedelta(days=age_days)).timestamp()
    os.utime(path, (t, t))


def present(storage) -> set[str]:
    return {
        str(p.relative_to(storage.data_dir)) for p in storage.data_dir.rglob("*") if p.is_file()
    }


def test_quarantine_goes_after_its_retention_the_rest_stays(storage):
    put(storage, "quarantine/old-mail/0-virus.exe", 31)
    put(storage, "quarantine/new-mail/0-virus.exe", 29)
    put(storage, "attachments/2025/01/old-mail/invoice.pdf", 400)
    put(storage, "raw/2025/01/abc.eml", 400)
    put(storage, "spool/abc.eml", 400)
    report = run_once("ecom", storage, None, NOW)
    assert report.counts() == {"quarantine": 1}
    assert report.removed["quarantine"] == ["quarantine/old-mail/0-virus.exe"]
    assert report.bytes_freed == 10
    assert present(storage) == {
        "quarantine/new-mail/0-virus.exe",
        "attachments/2025/01/old-mail/invoice.pdf",
        "raw/2025/01/abc.eml",
        "spool/abc.eml",
    }
    assert not (storage.data_dir / "quarantine" / "old-mail").exists(), "empty directory left"
    assert (storage.data_dir / "quarantine").is_dir()


def test_attachments_go_only_with_a_local_retention(storage):
    storage = replace(storage, attachment_retention_days=30)
    put(storage, "attachments/2026/09/a/old.pdf", 45)
    put(storage, "attachments/2026/11/b/new.pdf", 2)
    report = run_once("ecom", storage, None, NOW)
    assert report.removed["attachments"] == ["attachments/2026/09/a/old.pdf"]
    assert present(storage) == {"attachments/2026/11/b/new.pdf"}


def test_nothing_to_do_on_a_new_volume(storage):
    assert run_once("ecom", storage, None, NOW).counts() == {}


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "now", "due"),
    [
        ("02:00", utc(2026, 11, 25, 1, 0), utc(2026, 11, 25, 2, 0)),
        ("02:00", utc(2026, 11, 25, 2, 0), utc(2026, 11, 26, 2, 0)),
        ("23:59", utc(2026, 12, 31, 23, 59, 30), utc(2027, 1, 1, 23, 59)),
    ],
)
def test_next_run_is_the_coming_daily_time(at, now, due):
    assert next_run(at, now) == due


def test_a_bad_time_is_a_configuration_error():
    from mailer.config import ConfigError

    env = {"HOUSEKEEPING_AT": "2am", "MAILER_PROFILE": "ecom"}
    with pytest.raises(ConfigError, match="HOUSEKEEPING_AT='2am' is not a time"):
        load_config(env)
