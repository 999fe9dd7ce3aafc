"""backup.lock (B4): two runs never overlap; the second says so and exits 3; a crashed holder
leaves no stale lock."""

import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from backup import config, runlog
from backup.errors import Overlap
from backup.lock import LOCK_NAME, RunLock
from backup.run import run_backup

pytestmark = pytest.mark.unit


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    (tmp_path / "backups").mkdir()
    return config.load({"BACKUP_DIR": str(tmp_path / "backups"), "TMPDIR": str(tmp_path)})


def test_a_second_lock_is_refused_and_names_the_holder(tmp_path: Path):
    with (
        RunLock(tmp_path),
        pytest.raises(Overlap, match=r"another backup run holds .*\(pid \d+ on "),
    ):
        RunLock(tmp_path).acquire()
    # released: the next run gets it
    with RunLock(tmp_path) as lock:
        assert lock.held


def test_lock_file_is_not_world_readable(tmp_path: Path):
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_NAME).stat().st_mode & 0o007 == 0


def _holder(tmp_path: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from pathlib import Path; from backup.lock import RunLock\n"
        "lock = RunLock(Path(sys.argv[1])); lock.acquire(); print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_lock_holds_across_processes_and_dies_with_its_holder(tmp_path: Path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(Overlap):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()  # a crash: no release, no cleanup
        proc.wait()
    deadline = time.monotonic() + 5
    while True:
        try:
            with RunLock(tmp_path):
                break
        except Overlap:
            assert time.monotonic() < deadline, "the lock outlived its holder"
            time.sleep(0.05)


class NeverCalled:
    def __getattr__(self, name):
        raise AssertionError(f"an overlapping run must not touch the database ({name})")


def test_an_overlapping_run_exits_3_logs_and_dumps_nothing(cfg, tmp_path: Path):
    with RunLock(cfg.backup_dir):
        report = run_backup(cfg, source=lambda: nullcontext(NeverCalled()))
    assert (report.exit_code, report.result) == (3, "overlap")
    assert "another backup run holds" in report.message
    (rec,) = runlog.records(cfg.backup_dir)
    assert (rec.result, rec.exit_code) == ("overlap", 3)
    assert sorted(p.name for p in cfg.backup_dir.iterdir()) == [LOCK_NAME, runlog.LOG_NAME]
