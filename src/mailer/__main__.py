"""`python -m mailer`: run the service and exit with its code (0 clean, 1 config, 2 connection)."""

import os
import sys

from mailer.service import main

# How long a starting mailer waits for PostgreSQL, Redis and its mailbox before exit code 2.
sys.exit(
    main(
        start_attempts=int(os.environ.get("MAILER_START_ATTEMPTS", "30")),
        start_delay=float(os.environ.get("MAILER_START_DELAY_SECONDS", "2")),
    )
)
