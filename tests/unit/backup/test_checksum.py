"""backup.checksum: sha256sum-format files beside each dump, and their verification."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from backup import checksum, listing

pytestmark = pytest.mark.unit


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    p = tmp_path / "praxis-20250131T023000Z.dump"
    p.write_bytes(b"PGDMP" + bytes(range(256)) * 100)
    checksum.write(p, hashlib.sha256(p.read_bytes()).hexdigest())
    return p


def test_a_correct_checksum_is_ok(dump: Path):
    assert checksum.status(dump) == "ok"
    text = checksum.checksum_path(dump).read_text()
    assert text == f"{hashlib.sha256(dump.read_bytes()).hexdigest()}  {dump.name}\n"


@pytest.mark.skipif(not shutil.which("sha256sum"), reason="coreutils sha256sum not installed")
def test_sha256sum_can_check_it(dump: Path):
    proc = subprocess.run(
        ["sha256sum", "-c", checksum.checksum_path(dump).name], cwd=dump.parent, capture_output=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_changed_dump_is_a_mismatch(dump: Path):
    data = bytearray(dump.read_bytes())
    data[1000] ^= 0xFF
    dump.write_bytes(bytes(data))
    assert checksum.status(dump) == "mismatch"


def test_missing_and_malformed_checksum_files(dump: Path):
    path = checksum.checksum_path(dump)
    path.write_text("not a checksum\n")
    assert checksum.status(dump) == "malformed"
    path.write_text(f"{'0' * 64}  other-20250131T023000Z.dump\n")  # names another file
    assert checksum.status(dump) == "malformed"
    path.unlink()
    assert checksum.status(dump) == "missing"


def test_list_shows_the_status_and_exits_6_on_a_mismatch(dump: Path, capsys):
    (dump.parent / "notes.txt").write_text("not a dump")
    assert listing.show(dump.parent) == 0
    out = capsys.readouterr().out
    assert dump.name in out and " ok" in out and "notes.txt" not in out
    dump.write_bytes(b"damaged")
    assert listing.show(dump.parent, as_json=True) == 6
    assert '"checksum": "mismatch"' in capsys.readouterr().out
