"""The `potluck` program: one executable, two roles.

With no arguments (or `gui`) it opens the desktop app; any other first argument is a sub-command of the
headless CLI (`serve`, `generate`, `node`, `demo`, ...). The GUI branch never imports torch, transformers or
hivemind; the CLI branch never imports Qt.
"""

from __future__ import annotations

import multiprocessing
import sys

from potluck.core.cli.main import main as cli_main
from potluck.core.program import exit_quickly


def opens_gui(argv: list[str]) -> bool:
    """Whether these arguments open the desktop app (none, `gui`, or macOS Finder's -psn_*) rather than a command."""
    return not argv or argv[0] == "gui" or argv[0].startswith("-psn")


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()  # a frozen build re-enters here for multiprocessing children
    argv = sys.argv[1:] if argv is None else list(argv)
    if opens_gui(argv):
        from potluck.app.main import run_gui

        return run_gui(argv[1:] if argv and argv[0] == "gui" else [])
    return cli_main(argv)


def run() -> None:
    """The console script: the GUI exits as Qt does; a command line ends without the interpreter's teardown."""
    code = main()
    if not opens_gui(sys.argv[1:]):
        exit_quickly(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
