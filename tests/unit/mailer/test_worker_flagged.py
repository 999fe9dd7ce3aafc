"""A mail the fetcher could not fetch arrives flagged: the worker stores a row for a person
(status unprocessed, the reason as its defect, a staff notice) and never parses it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mailer.queue import Entry
from mailer.worker import Worker

pytestmark = [pytest.mark.unit, pytest.mark.req("RW2")]


class Store:
    def __init__(self):
        self.saved = []

    def is_stored(self, source, source_id):
        return False

    def save(self, mail):
        self.saved.append(mail)
        return "stored", 1


class Queue:
    def __init__(self):
        self.acked = []

    def ack(self, entry):
        self.acked.append(entry.entry_id)


def test_a_flagged_entry_is_stored_unprocessed_with_its_reason(tmp_path):
    cfg = SimpleNamespace(
        profile="ecom",
        storage=SimpleNamespace(data_dir=tmp_path, spool_threshold_bytes=1 << 22),
        smtp=SimpleNamespace(staff_address="orders@example.com", from_address="ecom@example.com"),
    )
    store, queue = Store(), Queue()
    worker = Worker(cfg, store, queue, None, "ecom-1")
    why = "could not be fetched from the mailbox after 3 attempts (boom); it is still there"
    worker.handle(Entry("1-0", "pop3s://mailpit:1110", "u7#unfetchable", "u7", b"", flag=why))
    (row,) = store.saved
    assert row.status == "unprocessed" and row.defects == [why]
    assert row.source_id == "u7#unfetchable" and row.raw == b""
    assert [o.recipient for o in row.outbox] == ["orders@example.com"]
    assert queue.acked == ["1-0"]
