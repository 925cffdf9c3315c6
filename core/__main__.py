"""`python -m potluck.core …`: the headless command line, as engine child processes (servers, the node) run it."""

from potluck.core.cli.main import main
from potluck.core.program import exit_quickly

exit_quickly(main())
