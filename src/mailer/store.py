"""PostgreSQL storage of one profile: versioned migrations at start, the mail with its attachments
and outbox rows in one transaction, and the outbox's state machine."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from mailer.config import DatabaseConfig

log = logging.getLogger("mailer.store")

# one advisory lock id for migrations, so two replicas starting together do not race
_MIGRATION_LOCK = 0x6D61696C


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every file in mailer/migrations, in version order."""
    found = []
    for entry in resources.files("mailer.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found


@dataclass
class AttachmentRow:
    position: int
    filename: str
    original_filename: str | None
    declared_type: str | None
    kind: str | None
    size_bytes: int
    sha256: str
    storage_path: str | None
    virus_scan_status: str
    virus_signature: str | None = None
    refused_reason: str | None = None


@dataclass
class OutboxRow:
    kind: str
    recipient: str
    subject: str
    body: str
    message_id: str


@dataclass
class MailRow:
    source: str
    source_id: str
    external_id: str
    message_id: str | None
    fingerprint: str
    sender: str
    recipients: list[str]
    subject: str
    sent_at: datetime | None
    body_text: str
    defects: list[str]
    status: str
    category: str | None
    summary: str | None
    ai_source: str | None
    ai_latency_ms: int | None
    ai_error: str | None
    processing_ms: int
    worker: str
    raw: bytes | None  # the raw mail, or None when it is kept as a file (raw_path)
    raw_size: int
    raw_path: str | None = None  # relative to DATA_DIR
    attachments: list[AttachmentRow] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)


# SQLSTATEs of a refused login (invalid_password, invalid_authorization_specification): the
# secret and the database disagree, and no retry changes that
_REFUSED_LOGIN = {"28P01", "28000"}


class StoreUnavailable(Exception):
    """The store could not be opened; `permanent`: PostgreSQL refused the login."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def probe(conninfo: str, timeout: float) -> None:
    """One direct connection before the pool opens. psycopg_pool logs each failed connection
    but raises only "pool initialization incomplete", and only after its whole timeout; this
    fails at once and names the cause. A refused login is permanent (the start gives up at once,
    exit code 2, instead of thirty attempts logged as "unreachable"); anything else is worth
    retrying."""
    try:
        with psycopg.connect(conninfo, connect_timeout=max(1, round(timeout))):
            return
    except psycopg.OperationalError as err:
        said = str(err).strip()
        if err.sqlstate in _REFUSED_LOGIN or "password authentication failed" in said:
            raise StoreUnavailable(
                f"PostgreSQL refused the login ({said}): the password file and the database "
                "disagree, e.g. a database volume made with other secrets",
                permanent=True,
            ) from err
        raise StoreUnavailable(f"PostgreSQL not reachable: {said}") from err


class Store:
    def __init__(self, conninfo: str, *, max_size: int = 5, name: str = "mailer"):
        self._conninfo = conninfo
        self._new_pool = lambda: ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            name=name,
            open=False,
            kwargs={"application_name": name},
        )
        self.pool = self._new_pool()

    def open(self, timeout: float = 10.0) -> None:
        """Open the pool, waiting until a first connection works; `probe` first, so that a
        failure is quick and named. A pool whose wait timed out is closed by psycopg_pool and
        cannot be opened again, so a failed attempt leaves a fresh pool behind: the start's
        retries can succeed once PostgreSQL answers (they used to fail with PoolClosed until the
        mailer gave up)."""
        probe(self._conninfo, timeout)
        try:
            self.pool.open(wait=True, timeout=timeout)
        except BaseException:
            self.pool.close()
            self.pool = self._new_pool()
            raise

    def close(self) -> None:
        self.pool.close()

    def ping(self) -> bool:
        try:
            with self.pool.connection(timeout=5) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    def migrate(self) -> list[str]:
        """Apply the migrations not applied yet, each in its own transaction; return their names."""
        applied = []
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in migrations():
                if version in done:
                    continue
                conn.execute(sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )
                applied.append(name)
        for name in applied:
            log.info("schema migration applied", extra={"migration": name})
        return applied

    def is_stored(self, source: str, source_id: str) -> bool:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM emails WHERE source = %s AND source_id = %s "
                "UNION ALL SELECT 1 FROM duplicates WHERE source = %s AND source_id = %s LIMIT 1",
                (source, source_id, source, source_id),
            ).fetchone()
        return row is not None

    def has_message_id(self, message_id: str) -> bool:
        """A stored mail has this Message-ID: a new one with it is a duplicate, decided before
        anything of it is scanned, classified or written."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM emails WHERE message_id = %s LIMIT 1", (message_id,)
            ).fetchone()
        return row is not None

    def stored_files(self) -> list[tuple[int, str, str]]:
        """(email id, storage path, sha256) of every attachment file still kept."""
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT email_id, storage_path, sha256 FROM attachments "
                "WHERE storage_path IS NOT NULL AND file_removed_at IS NULL ORDER BY id"
            ).fetchall()

    def known_source_ids(self, source: str, candidates: list[str]) -> set[str]:
        """Which of these source ids are already stored (or recorded as duplicates)."""
        if not candidates:
            return set()
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT source_id FROM emails WHERE source = %s AND source_id = ANY(%s) "
                "UNION SELECT source_id FROM duplicates WHERE source = %s AND source_id = ANY(%s)",
                (source, candidates, source, candidates),
            ).fetchall()
        return {r[0] for r in rows}

    def save(self, mail: MailRow) -> tuple[str, int]:
        """See _save; a concurrent insert of the same Message-ID is retried once and then seen
        as the duplicate it is."""
        try:
            return self._save(mail)
        except psycopg.errors.UniqueViolation:
            return self._save(mail)

    def _save(self, mail: MailRow) -> tuple[str, int]:
        """Store the mail, its attachments and outbox rows atomically.

        Returns ("stored", id), ("already", id) when this source id was stored before (a
        re-delivered queue entry), or ("duplicate", id of the first) when another mail with the
        same Message-ID exists.
        """
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            existing = cur.execute(
                "SELECT id FROM emails WHERE source = %s AND source_id = %s",
                (mail.source, mail.source_id),
            ).fetchone()
            if existing:
                return "already", existing[0]
            if mail.message_id:
                first = cur.execute(
                    "SELECT id, fingerprint FROM emails WHERE message_id = %s", (mail.message_id,)
                ).fetchone()
                if first:
                    _insert_duplicate(cur, mail, first[0], same=first[1] == mail.fingerprint)
                    return "duplicate", first[0]
            email_id = _insert_email(cur, mail)
            for a in mail.attachments:
                _insert_attachment(cur, email_id, a)
            for o in mail.outbox:
                cur.execute(
                    "INSERT INTO outbox (email_id, kind, recipient, subject, body, message_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (email_id, o.kind, o.recipient, o.subject, o.body, o.message_id),
                )
            return "stored", email_id

    def files_removed(self, storage_paths: list[str]) -> int:
        """Record that the housekeeping deleted these files; the rows stay."""
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE attachments SET file_removed_at = now() "
                "WHERE storage_path = ANY(%s) AND file_removed_at IS NULL",
                (storage_paths,),
            )
            return cur.rowcount

    # --- outbox --------------------------------------------------------------------------
    def claim_outbox(self, limit: int = 10, stale_after_s: int = 300) -> list[dict]:
        """Take due rows (pending, or 'sending' for longer than stale_after_s: a sender that
        died mid-send) and mark them sending, so two senders never take the same row."""
        with self.pool.connection() as conn, conn.transaction():
            rows = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    """UPDATE outbox SET status = 'sending', attempts = attempts + 1,
                       next_attempt_at = now() + make_interval(secs => %s)
                   WHERE id IN (
                       SELECT id FROM outbox
                       WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()
                       ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
                   RETURNING id, kind, recipient, subject, body, message_id, attempts""",
                    (stale_after_s, limit),
                )
                .fetchall()
            )
        return rows

    def outbox_sent(self, outbox_id: int) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'sent', sent_at = now(), last_error = NULL "
                "WHERE id = %s",
                (outbox_id,),
            )

    def outbox_failed(self, outbox_id: int, error: str, retry_in_s: float | None) -> None:
        with self.pool.connection() as conn:
            if retry_in_s is None:
                conn.execute(
                    "UPDATE outbox SET status = 'failed', last_error = %s WHERE id = %s",
                    (error, outbox_id),
                )
            else:
                conn.execute(
                    "UPDATE outbox SET status = 'pending', last_error = %s, "
                    "next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
                    (error, retry_in_s, outbox_id),
                )


def _insert_duplicate(cur: psycopg.Cursor, mail: MailRow, first_id: int, *, same: bool) -> None:
    """Record a mail whose Message-ID is stored already; its raw bytes are kept only when they
    differ from the first's (the same Message-ID on other content deserves a look)."""
    cur.execute(
        "INSERT INTO duplicates (source, source_id, external_id, message_id, "
        "fingerprint, email_id, raw, raw_path) "
        "VALUES (%s, %s, %s, %s, %s, %s, %b, %s) "
        "ON CONFLICT (source, source_id) DO NOTHING",
        (
            mail.source,
            mail.source_id,
            mail.external_id,
            mail.message_id,
            mail.fingerprint,
            first_id,
            None if same else mail.raw,
            None if same else mail.raw_path,
        ),
    )


def _insert_email(cur: psycopg.Cursor, mail: MailRow) -> int:
    """The mail's row and its raw bytes (or the path of its kept raw file); its id."""
    email_id = cur.execute(
        """INSERT INTO emails (source, source_id, external_id, message_id, fingerprint,
           sender, recipients, subject, sent_at, body_text, defects, status, category,
           summary, ai_source, ai_latency_ms, ai_error, processing_ms, worker)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
           %s, %s) RETURNING id""",
        (
            mail.source,
            mail.source_id,
            mail.external_id,
            mail.message_id,
            mail.fingerprint,
            mail.sender,
            mail.recipients,
            mail.subject,
            mail.sent_at,
            mail.body_text,
            mail.defects,
            mail.status,
            mail.category,
            mail.summary,
            mail.ai_source,
            mail.ai_latency_ms,
            mail.ai_error,
            mail.processing_ms,
            mail.worker,
        ),
    ).fetchone()[0]
    cur.execute(
        "INSERT INTO raw_messages (email_id, raw, raw_path, size_bytes) VALUES (%s, %b, %s, %s)",
        (email_id, mail.raw, mail.raw_path, mail.raw_size),
    )
    return email_id


def _insert_attachment(cur: psycopg.Cursor, email_id: int, a: AttachmentRow) -> None:
    cur.execute(
        """INSERT INTO attachments (email_id, position, filename, original_filename,
           declared_type, kind, size_bytes, sha256, storage_path, virus_scan_status,
           virus_signature, refused_reason)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            email_id,
            a.position,
            a.filename,
            a.original_filename,
            a.declared_type,
            a.kind,
            a.size_bytes,
            a.sha256,
            a.storage_path,
            a.virus_scan_status,
            a.virus_signature,
            a.refused_reason,
        ),
    )


def conninfo(db: DatabaseConfig) -> str:
    """The connection string for the database section (DB_*)."""
    return psycopg.conninfo.make_conninfo(
        host=db.host,
        port=db.port,
        dbname=db.name,
        user=db.user,
        password=db.password,
        connect_timeout=10,
    )
