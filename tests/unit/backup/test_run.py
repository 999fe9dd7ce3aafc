"""backup.run: one run end to end with a fake database and fake writers. Exit codes (X1): 0
success, 1 database error, 2 disk full (detected by errno or by the free-space check), 5 other
storage errors; a failed run leaves nothing under a final name and still writes its log line."""

import errno
import io
import os
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backup import checksum, config, files, runlog
from backup.errors import DatabaseError
from backup.run import run_backup

pytestmark = pytest.mark.unit

MOMENT = datetime(2025, 1, 31, 2, 30, 0, tzinfo=UTC)
GLOBALS = b"--\n-- PostgreSQL database cluster dump\n--\nCREATE ROLE praxis;\n"
PLENTY = 10**12


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    (tmp_path / "backups").mkdir()
    return config.load(
        {
            "BACKUP_DIR": str(tmp_path / "backups"),
            "TMPDIR": str(tmp_path),
            "BACKUP_DATABASES": "praxis,ecom,n8n",
        }
    )


class FakeSource:
    """Stands in for PgTools: dumps are byte strings; failures are chosen per database."""

    def __init__(self, *, unreachable=False, fail_after=(), missing=(), unreadable=()):
        self.data = {db: f"PGDMP {db} ".encode() * 5000 for db in ("praxis", "ecom", "n8n")}
        self.unreachable = unreachable
        self.fail_after = set(fail_after)  # pg_dump writes output, then exits non-zero
        self.missing = set(missing)
        self.unreadable = set(unreadable)
        self.dumped: list[str] = []

    def database_sizes(self, databases):
        if self.unreachable:
            raise DatabaseError(
                'psql on postgres failed (exit 2): connection to server at "postgres" failed: '
                "Connection refused"
            )
        return {db: 8_000_000 for db in databases if db not in self.missing}

    @contextmanager
    def dump(self, database):
        self.dumped.append(database)
        yield io.BytesIO(self.data[database])
        if database in self.fail_after:
            raise DatabaseError(f"pg_dump of {database} failed (exit 1): server closed")

    @contextmanager
    def dump_globals(self):
        yield io.BytesIO(GLOBALS)

    def archive_list(self, path: Path) -> str:
        db = path.name.lstrip(".").split("-")[0]
        if db in self.unreadable:
            raise DatabaseError(f"pg_restore --list {path.name} failed (exit 1): not an archive")
        return f";\n;     dbname: {db}\n;     Dumped from database version: 15.10\n"


def run(cfg, source, **kw):
    kw.setdefault("free", lambda _d: PLENTY)
    return run_backup(cfg, source=lambda: nullcontext(source), now=lambda: MOMENT, **kw)


def finals(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if not p.name.startswith(".")} - {"backup.log"}


def last_record(directory: Path) -> runlog.RunRecord:
    return runlog.records(directory)[-1]


def test_success_exits_0_with_verified_checksummed_private_dumps(cfg):
    src = FakeSource()
    report = run(cfg, src)
    assert (report.exit_code, report.result) == (0, "success"), report.message
    d = cfg.backup_dir
    assert finals(d) == {
        "praxis-20250131T023000Z.dump",
        "praxis-20250131T023000Z.dump.sha256",
        "ecom-20250131T023000Z.dump",
        "ecom-20250131T023000Z.dump.sha256",
        "n8n-20250131T023000Z.dump",
        "n8n-20250131T023000Z.dump.sha256",
        "globals-20250131T023000Z.sql",
        "globals-20250131T023000Z.sql.sha256",
    }
    for name in finals(d):
        assert (d / name).stat().st_mode & 0o777 == 0o640, name
        if not name.endswith(".sha256"):
            assert checksum.status(d / name) == "ok"
    assert (d / "praxis-20250131T023000Z.dump").read_bytes() == src.data["praxis"]
    assert not [p for p in d.iterdir() if p.name.endswith(".partial")]
    rec = last_record(d)
    assert (rec.result, rec.exit_code) == ("success", 0)
    assert rec.sizes == {
        "praxis": len(src.data["praxis"]),
        "ecom": len(src.data["ecom"]),
        "n8n": len(src.data["n8n"]),
        "globals": len(GLOBALS),
    }
    assert (d / runlog.LOG_NAME).stat().st_mode & 0o007 == 0


def test_unreachable_database_exits_1_and_logs_it(cfg):
    report = run(cfg, FakeSource(unreachable=True))
    assert (report.exit_code, report.result) == (1, "db_error")
    assert "Connection refused" in report.message
    rec = last_record(cfg.backup_dir)
    assert (rec.result, rec.exit_code) == ("db_error", 1)
    assert "Connection refused" in rec.message
    assert finals(cfg.backup_dir) == set()


def test_pg_dump_failing_midway_leaves_no_partial_and_the_others_are_dumped(cfg):
    src = FakeSource(fail_after={"ecom"})
    report = run(cfg, src)
    assert (report.exit_code, report.result) == (1, "db_error")
    assert src.dumped == ["praxis", "ecom", "n8n"]
    names = {p.name for p in cfg.backup_dir.iterdir()}
    assert not any(n.startswith("ecom-") or ("ecom" in n and "partial" in n) for n in names)
    assert "praxis-20250131T023000Z.dump" in names and "n8n-20250131T023000Z.dump" in names
    assert last_record(cfg.backup_dir).sizes.keys() == {"praxis", "n8n", "globals"}


def test_a_missing_database_is_a_database_error(cfg):
    report = run(cfg, FakeSource(missing={"n8n"}))
    assert report.exit_code == 1 and "n8n: no such database" in report.message


def test_a_dump_pg_restore_cannot_read_is_a_database_error_and_not_kept(cfg):
    report = run(cfg, FakeSource(unreadable={"praxis"}))
    assert report.exit_code == 1
    assert not [p for p in cfg.backup_dir.iterdir() if "praxis" in p.name]


class FullDiskWriter:
    """A fake writer: the disk fills after `room` bytes (the OSError a real write raises)."""

    def __init__(self, final: Path, room: int = 10_000):
        self.final, self.tmp, self.size, self.room = final, files.partial_name(final), 0, room
        self.aborted = self.committed = False

    def write(self, data: bytes) -> None:
        if self.size + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.size += len(data)

    def commit(self) -> None:
        self.committed = True

    def abort(self) -> None:
        self.aborted = True


def test_enospc_from_a_writer_exits_2(cfg):
    writers: list[FullDiskWriter] = []

    def opener(final: Path) -> FullDiskWriter:
        writers.append(FullDiskWriter(final))
        return writers[-1]

    report = run(cfg, FakeSource(), opener=opener)
    assert (report.exit_code, report.result) == (2, "disk_full")
    assert "ENOSPC" in report.message or "No space left" in report.message
    assert writers[0].aborted and not writers[0].committed
    assert len(writers) == 1, "a full disk stops the run; the next database is not tried"
    rec = last_record(cfg.backup_dir)
    assert (rec.result, rec.exit_code) == ("disk_full", 2)


def test_enospc_in_a_real_file_write_exits_2_and_leaves_no_partial(cfg, monkeypatch):
    """The disk fills during the first dump; deleting the partial file frees the room the log
    line then needs (as on a real volume)."""
    real_write = os.write
    written = {"n": 0}

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".dump.partial"):
            if written["n"] + len(data) > 20_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            written["n"] += len(data)
        return real_write(fd, data)

    monkeypatch.setattr(files.os, "write", write)
    src = FakeSource()
    src.data["praxis"] = os.urandom(64_000)
    report = run(cfg, src)
    monkeypatch.undo()
    assert (report.exit_code, report.result) == (2, "disk_full"), report.message
    assert "errno ENOSPC" in report.message
    assert finals(cfg.backup_dir) == set()
    assert not [p for p in cfg.backup_dir.iterdir() if p.name.endswith(".partial")]
    assert last_record(cfg.backup_dir).result == "disk_full"


def test_the_free_space_check_refuses_before_dumping(cfg):
    src = FakeSource()
    report = run(cfg, src, free=lambda _d: 1_000_000)
    assert (report.exit_code, report.result) == (2, "disk_full")
    assert "bytes free" in report.message and "needs an estimated" in report.message
    assert src.dumped == []
    assert last_record(cfg.backup_dir).result == "disk_full"


def test_another_write_error_is_a_storage_error_not_disk_full(cfg):
    class Denied(FullDiskWriter):
        def write(self, data):
            raise OSError(errno.EACCES, "Permission denied")

    report = run(cfg, FakeSource(), opener=Denied)
    assert (report.exit_code, report.result) == (5, "io_error")


def test_a_missing_backup_dir_is_a_configuration_error(tmp_path):
    cfg = config.load({"BACKUP_DIR": str(tmp_path / "nope"), "TMPDIR": str(tmp_path)})
    report = run(cfg, FakeSource())
    assert (report.exit_code, report.result) == (4, "config_error")


def test_rotation_runs_only_after_a_success(cfg):
    old = cfg.backup_dir / "praxis-20200101T000000Z.dump"
    old.write_text("x")
    os.utime(old, (0, 0))
    assert run(cfg, FakeSource(unreachable=True)).exit_code == 1
    assert old.exists(), "a failing run must not delete the last good dumps"
    report = run(cfg, FakeSource())
    assert report.exit_code == 0 and report.rotated == [old.name] and not old.exists()
    assert last_record(cfg.backup_dir).rotated == 1


def test_partials_of_a_killed_run_are_removed_under_the_lock(cfg):
    stale = cfg.backup_dir / ".praxis-20200101T000000Z.dump.partial"
    stale.write_text("half")
    assert run(cfg, FakeSource()).exit_code == 0
    assert not stale.exists()


def test_an_unwritable_log_turns_a_success_into_a_failure(cfg, monkeypatch):
    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runlog.os, "open", full)
    report = run(cfg, FakeSource())
    assert (report.exit_code, report.result) == (2, "disk_full")
