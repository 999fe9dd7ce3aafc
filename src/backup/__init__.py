"""The stack's backup service: daily `pg_dump -Fc` of every database plus the cluster's globals,
checksummed, verified, rotated, logged and counted; restore into a fresh database with a
comparison against the source.

`python -m backup run|serve|restore|list|health` (see backup.cli). Exit codes (requirement X1 and
the documented additions), the same for every command:

    0  success
    1  database error: connection, authentication, pg_dump/pg_restore/psql failure, or a dump that
       pg_restore cannot read back
    2  disk full: the free-space check before the run, or a write that failed with ENOSPC
    3  another run holds the lock (runs never overlap, B4)
    4  configuration or usage error (bad variable, missing secret file, bad argument, refused
       restore target)
    5  storage error other than a full disk (permission denied, I/O error)
    6  restore: restored, but the comparison with the source database found differences
    7  interrupted (SIGTERM/SIGINT) before the run finished
"""

__version__ = "0.1.0"
