"""Prometheus metrics of a mailer. Names are the ones the dashboards and alert rules use."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EMAILS_PROCESSED = Counter(
    "emails_processed_total",
    "Mails committed to the database",
    ["profile", "status"],
    registry=REGISTRY,
)
EMAILS_DUPLICATE = Counter(
    "emails_duplicate_total",
    "Mails recognised as already stored (by Message-ID)",
    ["profile"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "email_processing_seconds",
    "From taking a mail off the queue to its commit",
    ["profile"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
END_TO_END_SECONDS = Histogram(
    "email_end_to_end_seconds",
    "From fetching a mail at its source to its commit",
    ["profile"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 150, 300),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "email_queue_depth",
    "Mails waiting in the queue (undelivered plus unacknowledged)",
    ["profile"],
    registry=REGISTRY,
)
AI_SECONDS = Histogram(
    "ai_processing_seconds",
    "Ollama classification round-trip",
    ["profile"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
    registry=REGISTRY,
)
AI_FALLBACK = Counter(
    "ai_fallback_total",
    "Mails classified by the rules because Ollama was slow or failing",
    ["profile"],
    registry=REGISTRY,
)
ATTACHMENT_SCANS = Counter(
    "attachment_scans_total", "clamd scan results", ["profile", "result"], registry=REGISTRY
)
ATTACHMENTS_INFECTED = Counter(
    "attachments_infected_total",
    "Attachments quarantined as infected",
    ["profile"],
    registry=REGISTRY,
)
ATTACHMENTS_REFUSED = Counter(
    "attachments_refused_total",
    "Attachments refused by the size/type policy",
    ["profile", "reason"],
    registry=REGISTRY,
)
MAILBOX_UP = Gauge(
    "mailbox_connection_up",
    "1 when the last mailbox poll succeeded",
    ["profile"],
    registry=REGISTRY,
)
SMTP_RESULTS = Counter(
    "smtp_send_total", "Outbound mails by result", ["profile", "kind", "result"], registry=REGISTRY
)
RETRIES = Counter(
    "email_retries_total",
    "Mails left for a later try, by cause",
    ["profile", "cause"],
    registry=REGISTRY,
)
HOUSEKEEPING_REMOVED = Counter(
    "housekeeping_removed_files_total",
    "Files deleted by the housekeeping (M7), by kind",
    ["profile", "kind"],
    registry=REGISTRY,
)
ATTACHMENT_INTEGRITY = Counter(
    "attachment_integrity_failures_total",
    "Stored attachment files whose content no longer matches their row's sha256, or missing",
    ["profile", "problem"],
    registry=REGISTRY,
)
HOUSEKEEPING_LAST_RUN = Gauge(
    "housekeeping_last_run_timestamp_seconds",
    "When the housekeeping last finished (Unix time)",
    ["profile"],
    registry=REGISTRY,
)
MAILBOX_FOREIGN = Counter(
    "mailbox_foreign_total",
    "Mails left unread in the mailbox: not addressed to this profile (counted once per process)",
    ["profile"],
    registry=REGISTRY,
)
FETCH_FAILURES = Counter(
    "mailbox_fetch_failures_total",
    "Failed attempts to fetch one mail from the mailbox",
    ["profile"],
    registry=REGISTRY,
)
FETCH_SKIPPED = Counter(
    "mailbox_fetch_skipped_total",
    "Mails given up on after failing to fetch repeatedly; left in the mailbox, retried after a "
    "restart",
    ["profile"],
    registry=REGISTRY,
)
