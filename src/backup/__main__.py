"""`python -m backup`: run a command and exit with its code (see backup.errors.EXIT_CODES)."""

import os
import sys

from backup.cli import main

os.umask(0o027)  # B5: nothing this process creates is world-readable, whatever the caller's umask
sys.exit(main())
