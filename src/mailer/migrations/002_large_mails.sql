-- Large mails (over the spool threshold) are kept as files on the data volume, not as bytea:
-- raw/YYYY/MM/<sha256>.eml, relative to DATA_DIR. Exactly one of raw and raw_path is set.
ALTER TABLE raw_messages
    ALTER COLUMN raw DROP NOT NULL,
    ADD COLUMN raw_path text,
    ADD COLUMN size_bytes bigint,
    ADD CONSTRAINT raw_messages_one_copy CHECK ((raw IS NULL) <> (raw_path IS NULL));
UPDATE raw_messages SET size_bytes = octet_length(raw) WHERE size_bytes IS NULL;

ALTER TABLE duplicates ADD COLUMN raw_path text;

-- A mail whose processing crashed the worker again and again (poison) is stored raw and
-- flagged 'unprocessed' instead of blocking the queue; an operator looks at it.
ALTER TABLE emails DROP CONSTRAINT emails_status_check;
ALTER TABLE emails ADD CONSTRAINT emails_status_check
    CHECK (status IN ('processed', 'processed_without_ai', 'unprocessed'));
