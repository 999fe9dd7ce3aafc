-- Mail store of one profile (database praxis or ecom). Each mail exactly once: the unique key on
-- (source, source_id) makes a re-delivered stream entry a no-op; Message-ID is the second guard.
CREATE TABLE emails (
    id              bigserial PRIMARY KEY,
    source          text        NOT NULL,              -- e.g. pop3://mailpit:1110
    source_id       text        NOT NULL,              -- POP3 UIDL, or IMAP "uidvalidity:uid"
    external_id     text        NOT NULL,              -- the id a test can know (Mailpit: its message ID)
    message_id      text,                              -- normalised Message-ID header, if any
    fingerprint     text        NOT NULL,              -- sha256 of the raw bytes
    sender          text        NOT NULL DEFAULT '',
    recipients      text[]      NOT NULL DEFAULT '{}',
    subject         text        NOT NULL DEFAULT '',
    sent_at         timestamptz,
    received_at     timestamptz NOT NULL DEFAULT now(),
    body_text       text        NOT NULL DEFAULT '',
    defects         text[]      NOT NULL DEFAULT '{}', -- a malformed mail is stored and flagged
    status          text        NOT NULL CHECK (status IN ('processed', 'processed_without_ai')),
    category        text,
    summary         text,
    ai_source       text,                              -- ollama | rules
    ai_latency_ms   integer,
    ai_error        text,
    processing_ms   integer,
    worker          text,
    UNIQUE (source, source_id)
);
CREATE UNIQUE INDEX emails_message_id_key ON emails (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX emails_external_id_idx ON emails (external_id);

CREATE TABLE raw_messages (
    email_id  bigint PRIMARY KEY REFERENCES emails (id) ON DELETE CASCADE,
    raw       bytea NOT NULL
);

-- A second arrival of a Message-ID already stored: recorded, never silently dropped.
CREATE TABLE duplicates (
    id           bigserial PRIMARY KEY,
    source       text        NOT NULL,
    source_id    text        NOT NULL,
    external_id  text        NOT NULL,
    message_id   text        NOT NULL,
    fingerprint  text        NOT NULL,
    email_id     bigint      NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    seen_at      timestamptz NOT NULL DEFAULT now(),
    raw          bytea,                                -- kept when the bytes differ from the stored mail
    UNIQUE (source, source_id)
);

CREATE TABLE attachments (
    id                 bigserial PRIMARY KEY,
    email_id           bigint      NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    position           integer     NOT NULL,
    filename           text        NOT NULL,
    original_filename  text,
    declared_type      text,
    kind               text,                            -- by content: pdf png jpg docx xlsx
    size_bytes         bigint      NOT NULL,
    sha256             text        NOT NULL,
    storage_path       text,                            -- attachments/... or quarantine/..., relative to DATA_DIR
    virus_scan_status  text        NOT NULL CHECK (virus_scan_status IN ('clean', 'infected', 'refused', 'scan_failed')),
    virus_signature    text,
    refused_reason     text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (email_id, position)
);

-- Outbound mail (acknowledgement, staff notification) written in the same transaction as the
-- mail, sent afterwards: a crash never loses one; a resend reuses the same Message-ID.
CREATE TABLE outbox (
    id               bigserial PRIMARY KEY,
    email_id         bigint      NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    kind             text        NOT NULL CHECK (kind IN ('acknowledgement', 'notification')),
    recipient        text        NOT NULL,
    subject          text        NOT NULL,
    body             text        NOT NULL,
    message_id       text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    sent_at          timestamptz,
    UNIQUE (email_id, kind)
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE status IN ('pending', 'sending');
