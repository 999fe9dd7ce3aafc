"""`python -m mailer`: run the service and exit with its code (0 clean, 1 config, 2 connection).
`python -m mailer housekeeping`: one housekeeping run now (M7), same exit codes."""

import os
import sys

from mailer.app import housekeeping_main, main

if sys.argv[1:] == ["housekeeping"]:
    sys.exit(housekeeping_main())
if sys.argv[1:]:
    sys.exit(f"usage: python -m mailer [housekeeping]; unknown arguments {sys.argv[1:]}")
# How long a starting mailer waits for PostgreSQL, Redis and its mailbox before exit code 2.
sys.exit(
    main(
        start_attempts=int(os.environ.get("MAILER_START_ATTEMPTS", "30")),
        start_delay=float(os.environ.get("MAILER_START_DELAY_SECONDS", "2")),
    )
)
