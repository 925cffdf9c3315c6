"""`python -m potluck.core …`: the headless command line, as engine child processes (servers, the node) run it."""

import sys

from potluck.core.cli.main import main

sys.exit(main())
