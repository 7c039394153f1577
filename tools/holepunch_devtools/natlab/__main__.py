"""`python -m holepunch_devtools.natlab ...`: the NAT lab's command line (scripts/natlab)."""

import sys

from holepunch_devtools.natlab.cli import main

sys.exit(main())
