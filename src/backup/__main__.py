"""`python -m backup`: run a command and exit with its code (see backup.__init__)."""

import sys

from backup.cli import main

sys.exit(main())
