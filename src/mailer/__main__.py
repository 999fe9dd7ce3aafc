"""`python -m mailer`: run the service and exit with its code (0 clean, 1 config, 2 connection)."""

import sys

from mailer.service import main

sys.exit(main())
