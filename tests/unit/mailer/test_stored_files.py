"""A stored file is never overwritten (issue 10, case 3): a second mail reusing a Message-ID, or
another key that sanitises to the same folder, must not replace the first mail's attachment; a
file changed on disk afterwards is reported by the housekeeping's check."""

from __future__ import annotations

import hashlib
import os

import pytest

from mailer import metrics
from mailer.housekeeping import Report, verify
from mailer.worker import write_new

pytestmark = [pytest.mark.unit, pytest.mark.req("A1")]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_new_file_is_written_and_synced_under_its_name(tmp_path):
    path = tmp_path / "a" / "rechnung.pdf"
    assert write_new(path, b"first", sha(b"first")) == path
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["rechnung.pdf"]  # no temp left


def test_other_content_under_a_taken_name_never_replaces_it(tmp_path):
    path = tmp_path / "rechnung.pdf"
    write_new(path, b"first mail's invoice", sha(b"first mail's invoice"))
    other = b"someone else's bytes"
    got = write_new(path, other, sha(other))
    assert path.read_bytes() == b"first mail's invoice"
    assert got != path and got.parent == path.parent
    assert got.name == f"rechnung.{sha(other)[:12]}.pdf"
    assert got.read_bytes() == other


def test_the_same_content_again_reuses_the_file(tmp_path):
    """Processed again after a crash between writing and committing: the same bytes."""
    path = tmp_path / "x.pdf"
    write_new(path, b"same", sha(b"same"))
    inode = path.stat().st_ino
    assert write_new(path, b"same", sha(b"same")) == path
    assert path.stat().st_ino == inode


def test_a_third_content_is_refused_rather_than_overwriting(tmp_path):
    path = tmp_path / "x.pdf"
    write_new(path, b"one", sha(b"one"))
    alt = path.with_name(f"x.{sha(b'two')[:12]}.pdf")
    alt.write_bytes(b"planted")  # the alternative name taken by other content too
    with pytest.raises(FileExistsError):
        write_new(path, b"two", sha(b"two"))
    assert path.read_bytes() == b"one" and alt.read_bytes() == b"planted"


def test_a_spilled_part_is_linked_and_consumed(tmp_path):
    spilled = tmp_path / "work" / "part-1"
    spilled.parent.mkdir()
    spilled.write_bytes(b"large part")
    path = tmp_path / "att" / "big.bin"
    path.parent.mkdir()
    assert write_new(path, spilled, sha(b"large part")) == path
    assert path.read_bytes() == b"large part"
    assert not spilled.exists()


class FakeStore:
    def __init__(self, rows):
        self.rows = rows

    def stored_files(self):
        return self.rows


def test_verify_reports_changed_and_missing_files(tmp_path):
    (tmp_path / "ok.pdf").write_bytes(b"ok")
    (tmp_path / "changed.pdf").write_bytes(b"swapped")
    rows = [(1, "ok.pdf", sha(b"ok")), (2, "changed.pdf", sha(b"orig")), (3, "gone.pdf", "00")]
    before = metrics.ATTACHMENT_INTEGRITY.labels("ecom", "changed")._value.get()
    report = Report()
    verify("ecom", tmp_path, FakeStore(rows), report)
    assert report.integrity == [("changed.pdf", "changed"), ("gone.pdf", "missing")]
    assert metrics.ATTACHMENT_INTEGRITY.labels("ecom", "changed")._value.get() == before + 1
    assert os.path.exists(tmp_path / "changed.pdf")  # reported, not touched
