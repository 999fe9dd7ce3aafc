"""The mailer pipeline below Docker: fetcher -> Redis stream -> worker -> clamd -> PostgreSQL and
the data folder, with real servers as local processes (conftest.py) and the mailbox as a list.
What the e2e suite proves through the stack, here in seconds and with the failure injected
exactly where it matters: every mail stored once, nothing overwritten, nothing lost."""

from __future__ import annotations

import hashlib
import itertools
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest
import redis

from mailer.config import load_config
from mailer.fetcher import Fetcher
from mailer.queue import MailQueue
from mailer.sources import Fetched
from mailer.store import Store, conninfo
from mailer.worker import POISON_DELIVERIES, Worker

pytestmark = [pytest.mark.component, pytest.mark.req("E1", "E2", "A4", "RW2", "SLA-P3")]

PROFILE = "praxis"
ADDRESS = "praxis@praxis.example"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
_db_serial = itertools.count()


def mail(subject: str, *, message_id: str, attachment: tuple[str, bytes] | None = None) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "patient@example.org", ADDRESS, subject
    m["Message-ID"] = message_id
    m.set_content("Bitte um Rückruf.")
    if attachment:
        name, data = attachment
        m.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return m.as_bytes()


class Mailbox:
    """The mailbox as the fetcher sees a source: poll() yields the mails `known` does not
    report, the same interface as mailer.sources' POP3 and IMAP sources."""

    name = "pop3s://mailbox:995"

    def __init__(self) -> None:
        self.mails: dict[str, bytes] = {}

    def poll(self, known, delete=None, foreign=None):
        uids = list(self.mails)
        skip = known(uids)
        for uid in uids:
            if uid not in skip:
                raw = self.mails[uid]
                yield Fetched(uid, uid, raw, len(raw))


def _admin(server) -> psycopg.Connection:
    return psycopg.connect(
        host=server.host,
        port=server.port,
        user="postgres",
        password=server.password,
        dbname="postgres",
        autocommit=True,
    )


@pytest.fixture(scope="session")
def praxis_role(local_postgres):
    """The profile's role, as the stack's init script makes it (owner of its database)."""
    password = "component-test-password"
    with _admin(local_postgres) as conn:
        conn.execute(f"CREATE ROLE {PROFILE} LOGIN PASSWORD '{password}'")
    return password


@pytest.fixture
def cfg(tmp_path, local_postgres, local_redis, local_clamd, praxis_role):
    """A fresh database and an empty Redis per test; the configuration as the mailer reads it."""
    dbname = f"{PROFILE}_{next(_db_serial)}"
    with _admin(local_postgres) as conn:
        conn.execute(f"CREATE DATABASE {dbname} OWNER {PROFILE}")
    redis.Redis(
        host=local_redis.host, port=local_redis.port, password=local_redis.password
    ).flushall()
    secrets = {
        "DB_PASSWORD": praxis_role,
        "REDIS_PASSWORD": local_redis.password,
        "SOURCE_PASSWORD": "unused",
    }
    env = {f"{k}_FILE": str(tmp_path / k.lower()) for k in secrets}
    for k, v in secrets.items():
        (tmp_path / k.lower()).write_text(v)
    data = tmp_path / "data"
    data.mkdir()
    env |= {
        "MAILER_PROFILE": PROFILE,
        "MAILER_ADDRESSES": ADDRESS,
        "SOURCE_PROTOCOL": "pop3s",
        "SOURCE_HOST": "mailbox",
        "SOURCE_USER": "praxis",
        "REDIS_HOST": local_redis.host,
        "REDIS_PORT": str(local_redis.port),
        "DB_HOST": local_postgres.host,
        "DB_PORT": str(local_postgres.port),
        "DB_NAME": dbname,
        "CLAMD_HOST": local_clamd.host,
        "CLAMD_PORT": str(local_clamd.port),
        "SMTP_HOST": "smtp.example",
        "SMTP_FROM": ADDRESS,
        "STAFF_ADDRESS": "staff@praxis.example",
        "DATA_DIR": str(data),
        "WORKER_ID": "component-1",
    }
    return load_config(env)


class Pipeline:
    """The mailer's parts wired as mailer.app.main wires them, minus the threads."""

    def __init__(self, cfg, *, claim_idle_ms: int = 60_000):
        self.cfg = cfg
        self.redis = redis.Redis(
            host=cfg.redis.host, port=cfg.redis.port, password=cfg.redis.password
        )
        self.store = Store(conninfo(cfg.db), max_size=2)
        self.store.open(timeout=10)
        self.store.migrate()
        self.queue = MailQueue(self.redis, cfg.profile, claim_idle_ms=claim_idle_ms)
        self.queue.ensure_group()
        self.mailbox = Mailbox()
        self.fetcher = Fetcher(cfg.profile, cfg.source, self.mailbox, self.queue, self.store)

    def worker(self, name: str = "w1") -> Worker:
        return Worker(self.cfg, self.store, self.queue, None, consumer=name)

    def drain(self, worker: Worker, limit: int = 20) -> int:
        """Hand out and process queued mails until none is left (bounded)."""
        done = 0
        for _ in range(limit):
            entries = worker.queue.read(worker.consumer, block_ms=100)
            if not entries:
                return done
            for e in entries:
                worker.handle(e)
                done += 1
        raise AssertionError(f"the queue still had mails after {limit} rounds")

    def rows(self, sql: str, *args) -> list[tuple]:
        with self.store.pool.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def pending(self) -> int:
        return self.redis.xpending(self.queue.stream, self.queue.group)["pending"]

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def pipeline(cfg):
    p = Pipeline(cfg)
    yield p
    p.close()


def files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and "raw" not in p.parts and "spool" not in p.parts
    }


def test_fetch_scan_store_acknowledge(pipeline):
    """A clean PDF is stored, EICAR quarantined, each mail once with its outbox rows; the queue
    ends empty and a second poll fetches nothing again."""
    box = pipeline.mailbox
    box.mails["u1"] = mail("Befund", message_id="<m1@x>", attachment=("befund.pdf", PDF))
    box.mails["u2"] = mail("Virus", message_id="<m2@x>", attachment=("eicar.com", EICAR))
    assert pipeline.fetcher.poll_once() == 2
    assert pipeline.drain(pipeline.worker()) == 2

    atts = dict(
        pipeline.rows(
            "SELECT a.filename, a.virus_scan_status FROM attachments a JOIN emails e "
            "ON e.id = a.email_id ORDER BY e.id"
        )
    )
    assert atts == {"befund.pdf": "clean", "eicar.com": "infected"}
    stored = files(pipeline.cfg.storage.data_dir)
    pdf = next(p for p in stored if p.endswith("befund.pdf"))
    assert stored[pdf] == hashlib.sha256(PDF).hexdigest()
    assert any("quarantine" in p for p in stored), stored
    assert pipeline.rows("SELECT count(*) FROM emails") == [(2,)]
    assert pipeline.rows("SELECT count(*) FROM outbox")[0][0] >= 2
    assert pipeline.pending() == 0 and pipeline.queue.depth() == 0
    assert pipeline.fetcher.poll_once() == 0, "a stored mail was fetched again"


def test_a_reused_message_id_writes_nothing(pipeline):
    """The second mail with a stored Message-ID is recorded as a duplicate before its
    attachment is scanned or written: the first file is unchanged and no other appears."""
    pipeline.mailbox.mails["u1"] = mail("A", message_id="<same@x>", attachment=("r.pdf", PDF))
    pipeline.fetcher.poll_once()
    pipeline.drain(pipeline.worker())
    before = files(pipeline.cfg.storage.data_dir)
    other = PDF.replace(b"Catalog", b"Katalog")
    pipeline.mailbox.mails["u2"] = mail("B", message_id="<same@x>", attachment=("r.pdf", other))
    pipeline.fetcher.poll_once()
    pipeline.drain(pipeline.worker())
    assert files(pipeline.cfg.storage.data_dir) == before
    assert pipeline.rows("SELECT count(*) FROM emails") == [(1,)]
    assert pipeline.rows("SELECT source_id FROM duplicates") == [("u2",)]


def test_a_crash_after_the_commit_stores_the_mail_once(pipeline, cfg, monkeypatch):
    """The worker dies between the commit and the acknowledgement: the entry stays pending, a
    second worker claims it, sees it stored, and only acknowledges it."""
    pipeline.mailbox.mails["u1"] = mail("Rezept", message_id="<r1@x>")
    pipeline.fetcher.poll_once()
    first = pipeline.worker("w1")
    (entry,) = pipeline.queue.read("w1", block_ms=100)

    def crash(_entry):
        raise ConnectionError("killed between commit and ack")

    monkeypatch.setattr(pipeline.queue, "ack", crash)
    with pytest.raises(ConnectionError):
        first.handle(entry)
    monkeypatch.undo()
    assert pipeline.pending() == 1
    assert pipeline.rows("SELECT count(*) FROM emails") == [(1,)]

    later = Pipeline(cfg, claim_idle_ms=0)  # the entry is stale at once
    try:
        assert later.drain(later.worker("w2")) == 1
        assert later.rows("SELECT count(*) FROM emails") == [(1,)]
        assert later.pending() == 0
    finally:
        later.close()


def test_a_crash_before_the_commit_leaves_it_to_be_processed_again(pipeline, cfg, monkeypatch):
    """The worker dies before anything is committed: nothing is stored, the mail is handed out
    again and stored once."""
    pipeline.mailbox.mails["u1"] = mail("Termin", message_id="<t1@x>", attachment=("a.pdf", PDF))
    pipeline.fetcher.poll_once()
    (entry,) = pipeline.queue.read("w1", block_ms=100)

    def crash(_mail):
        raise ConnectionError("killed before the commit")

    monkeypatch.setattr(pipeline.store, "save", crash)
    with pytest.raises(ConnectionError):
        pipeline.worker("w1").handle(entry)
    monkeypatch.undo()
    assert pipeline.rows("SELECT count(*) FROM emails") == [(0,)]

    later = Pipeline(cfg, claim_idle_ms=0)
    try:
        assert later.drain(later.worker("w2")) == 1
        assert later.rows("SELECT count(*) FROM emails") == [(1,)]
        assert later.rows("SELECT count(*) FROM attachments") == [(1,)]
        assert later.pending() == 0
    finally:
        later.close()


def test_a_mail_that_keeps_crashing_the_worker_is_stored_unprocessed(pipeline, cfg):
    """Handed out more than POISON_DELIVERIES times without a commit: stored raw, flagged
    unprocessed, reported to the staff address, never parsed again."""
    pipeline.mailbox.mails["u1"] = mail("Gift", message_id="<p1@x>")
    pipeline.fetcher.poll_once()
    stale = Pipeline(cfg, claim_idle_ms=0)
    try:
        for _ in range(POISON_DELIVERIES):  # each claim is one more delivery without a commit
            (entry,) = stale.queue.read("crashing", block_ms=100)
        (entry,) = stale.queue.read("w2", block_ms=100)
        assert entry.deliveries > POISON_DELIVERIES
        stale.worker("w2").handle(entry)
        assert stale.rows("SELECT status FROM emails") == [("unprocessed",)]
        assert ("staff@praxis.example",) in stale.rows("SELECT recipient FROM outbox")
        assert stale.pending() == 0
    finally:
        stale.close()


def test_queue_depth_counts_what_waits_and_what_is_taken(pipeline):
    """SLA-P3's gauge: mails not yet handed out plus those handed out and not acknowledged; zero
    once all are committed (the stream's length: acknowledged entries are deleted)."""
    for i in range(3):
        pipeline.mailbox.mails[f"u{i}"] = mail(f"Nr {i}", message_id=f"<d{i}@x>")
    pipeline.fetcher.poll_once()
    assert pipeline.queue.depth() == 3
    worker = pipeline.worker()
    (taken,) = pipeline.queue.read(worker.consumer, block_ms=100)
    assert pipeline.queue.depth() == 3  # one taken, not yet committed: still waiting
    worker.handle(taken)
    assert pipeline.queue.depth() == 2
    pipeline.drain(worker)
    assert pipeline.queue.depth() == 0
