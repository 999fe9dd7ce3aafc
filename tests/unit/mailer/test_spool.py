"""The spool keeps large mails on disk between mailbox and worker: nothing half-written may look
like a mail, a mail fetched twice is one file, and the kept raw copy survives the spool file."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from mailer.spool import Spool, sha256_file

pytestmark = pytest.mark.unit

WHEN = datetime(2026, 11, 25, tzinfo=UTC)


def test_a_mail_appears_only_when_written_completely(tmp_path):
    spool = Spool(tmp_path, 10)
    with pytest.raises(ConnectionError), spool.writer("pop3://m:1110", "uid-1") as (name, fh):
        fh.write(b"half a mail")
        raise ConnectionError("mailbox went away")
    assert not spool.path(name).exists()
    assert list(spool.root.iterdir()) == [], "a temporary file was left behind"

    with spool.writer("pop3://m:1110", "uid-1") as (again, fh):
        fh.write(b"the whole mail")
    assert again == name and spool.path(name).read_bytes() == b"the whole mail"


def test_names_depend_on_source_and_id_only():
    a = Spool.name_for("pop3://m:1110", "uid-1")
    assert a == Spool.name_for("pop3://m:1110", "uid-1")
    assert a != Spool.name_for("imap://m:1143/INBOX", "uid-1")
    assert a != Spool.name_for("pop3://m:1110", "uid-2")


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden"])
def test_paths_stay_in_the_spool(tmp_path, bad):
    with pytest.raises(ValueError):
        Spool(tmp_path, 10).path(bad)


def test_kept_raw_outlives_the_spool_file(tmp_path):
    spool = Spool(tmp_path, 10)
    with spool.writer("s", "1") as (name, fh):
        fh.write(b"raw mail bytes")
    digest = sha256_file(spool.path(name))
    assert digest == hashlib.sha256(b"raw mail bytes").hexdigest()
    rel = spool.keep_raw(name, digest, WHEN)
    assert rel == f"raw/2026/11/{digest}.eml"
    work = spool.workdir(name)
    (work / "0").write_bytes(b"spilled part")
    spool.remove(name)
    assert not spool.path(name).exists() and not work.exists()
    assert (tmp_path / rel).read_bytes() == b"raw mail bytes"


def test_the_same_bytes_are_kept_once(tmp_path):
    spool = Spool(tmp_path, 10)
    for sid in ("1", "2"):
        with spool.writer("s", sid) as (_name, fh):
            fh.write(b"same")
    digest = hashlib.sha256(b"same").hexdigest()
    first = spool.keep_raw(Spool.name_for("s", "1"), digest, WHEN)
    second = spool.keep_raw(Spool.name_for("s", "2"), digest, WHEN)
    assert first == second
    assert len(list((tmp_path / "raw" / "2026" / "11").iterdir())) == 1


def test_a_workdir_starts_empty_each_try(tmp_path):
    spool = Spool(tmp_path, 10)
    (spool.workdir("abc") / "0").write_bytes(b"from a crashed try")
    assert list(spool.workdir("abc").iterdir()) == []
    spool.clear_work()
    assert not (spool.root / "work").exists()


def test_sweep_keeps_what_the_queue_refers_to(tmp_path):
    spool = Spool(tmp_path, 10)
    for sid in ("queued", "committed"):
        with spool.writer("s", sid) as (_name, fh):
            fh.write(b"mail")
    half = spool.root / ".abc.eml.99.tmp"
    half.write_bytes(b"half")
    queued, committed = Spool.name_for("s", "queued"), Spool.name_for("s", "committed")
    removed = spool.sweep({queued})
    assert sorted(removed) == sorted([committed, half.name])
    assert spool.path(queued).exists() and not spool.path(committed).exists()
    assert not half.exists()


def test_sweep_of_a_missing_spool_is_a_no_op(tmp_path):
    assert Spool(tmp_path / "nothing-yet", 10).sweep(set()) == []
