"""backup.retention (B2): only dumps (and their checksum files) older than the retention are
deleted; the log, the lock, foreign files, directories and symlinks stay, whatever their age."""

import os
import time
from pathlib import Path

import pytest

from backup.retention import delete_expired, expired

pytestmark = pytest.mark.unit

DAY = 86400
NOW = 1_800_000_000.0


def make(directory: Path, name: str, age_days: float, content: str = "x") -> Path:
    path = directory / name
    path.write_text(content)
    t = NOW - age_days * DAY
    os.utime(path, (t, t))
    return path


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    old, new = 8, 1
    for name in (
        "praxis-20250101T023000Z.dump",
        "praxis-20250101T023000Z.dump.sha256",
        "globals-20250101T023000Z.sql",
        "globals-20250101T023000Z.sql.sha256",
        "backup.log",
        ".backup.lock",
        "notes.txt",
        "praxis-20250101T023000Z.dump.bak",  # a copy someone made by hand
        "praxis.dump",  # no timestamp: not ours
        "ecom-20250101T023000Z.sql",  # only globals are .sql
        ".praxis-20250101T023000Z.dump.partial",
    ):
        make(tmp_path, name, old)
    make(tmp_path, "praxis-20250108T023000Z.dump", new)
    make(tmp_path, "praxis-20250108T023000Z.dump.sha256", new)
    make(tmp_path, "ecom-20250102T023000Z.dump", 6.9)
    return tmp_path


def test_only_dumps_older_than_the_retention_are_deleted(backups: Path):
    deleted = delete_expired(backups, 7, now=NOW)
    assert sorted(deleted) == [
        "globals-20250101T023000Z.sql",
        "globals-20250101T023000Z.sql.sha256",
        "praxis-20250101T023000Z.dump",
        "praxis-20250101T023000Z.dump.sha256",
    ]
    left = {p.name for p in backups.iterdir()}
    assert {
        "backup.log",
        ".backup.lock",
        "notes.txt",
        "praxis-20250101T023000Z.dump.bak",
        "praxis.dump",
        "ecom-20250101T023000Z.sql",
        ".praxis-20250101T023000Z.dump.partial",
        "praxis-20250108T023000Z.dump",
        "praxis-20250108T023000Z.dump.sha256",
        "ecom-20250102T023000Z.dump",
    } == left


def test_age_is_the_mtime_not_the_name(tmp_path: Path):
    # an old name with a fresh mtime (copied back from an archive) is kept
    make(tmp_path, "praxis-20200101T000000Z.dump", 0.5)
    assert delete_expired(tmp_path, 7, now=NOW) == []


def test_retention_is_configurable(backups: Path):
    assert "ecom-20250102T023000Z.dump" in [p.name for p in expired(backups, 5, now=NOW)]
    assert "ecom-20250102T023000Z.dump" not in [p.name for p in expired(backups, 7, now=NOW)]


def test_a_checksum_goes_with_its_dump_and_an_orphan_by_its_own_age(tmp_path: Path):
    make(tmp_path, "n8n-20250101T023000Z.dump", 9)
    make(tmp_path, "n8n-20250101T023000Z.dump.sha256", 1)  # younger: still goes with its dump
    make(tmp_path, "ecom-20250101T023000Z.dump.sha256", 9)  # dump already gone
    make(tmp_path, "ecom-20250109T023000Z.dump.sha256", 1)  # orphan, but young
    assert sorted(delete_expired(tmp_path, 7, now=NOW)) == [
        "ecom-20250101T023000Z.dump.sha256",
        "n8n-20250101T023000Z.dump",
        "n8n-20250101T023000Z.dump.sha256",
    ]


def test_directories_and_symlinks_with_dump_names_are_kept(tmp_path: Path):
    d = tmp_path / "praxis-20250101T023000Z.dump"
    d.mkdir()
    os.utime(d, (NOW - 30 * DAY, NOW - 30 * DAY))
    target = make(tmp_path, "elsewhere.bin", 30)
    link = tmp_path / "ecom-20250101T023000Z.dump"
    link.symlink_to(target)
    os.utime(link, (NOW - 30 * DAY, NOW - 30 * DAY), follow_symlinks=False)
    assert delete_expired(tmp_path, 7, now=NOW) == []
    assert d.is_dir() and link.is_symlink() and target.exists()


def test_defaults_to_the_current_time(tmp_path: Path):
    p = tmp_path / "praxis-20250101T023000Z.dump"
    p.write_text("x")
    t = time.time() - 8 * DAY
    os.utime(p, (t, t))
    assert delete_expired(tmp_path, 7) == [p.name]
