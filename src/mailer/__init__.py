"""mailer: fetches mail (POP3/IMAP), queues it in Redis, and a worker parses, deduplicates, stores
it in PostgreSQL, checks and virus-scans its attachments, classifies it (Ollama with a rule-based
fallback) and notifies the staff. Run as `praxis-mailer` and `ecom-mailer` (MAILER_PROFILE).

The pure core (no I/O besides the clamd/Ollama clients): config, parsing, attachments, clamd,
classify, scrub.
"""

__version__ = "0.1.0"
