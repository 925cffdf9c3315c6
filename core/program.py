"""How this program runs itself again (the app's node, local servers) and the environment the engine wants.

Standard library only: the GUI imports it too.
"""

from __future__ import annotations

import logging
import os
import sys

ENGINE_ENVIRONMENT_DEFAULTS = {
    # Idle OpenMP workers otherwise spin ~4 ms after each op and steal the next process's core (ENGINE_NOTES.md).
    "GOMP_SPINCOUNT": "10000",
    "HIVEMIND_LOGLEVEL": "ERROR",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def program_command(frozen: bool | None = None, executable: str | None = None) -> list[str]:
    """The command that runs the engine's command line: the frozen executable itself (it dispatches every
    sub-command to the engine), or the interpreter on the `potluck.core` package."""
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    executable = executable or sys.executable
    return [executable] if frozen else [executable, "-m", "potluck.core"]


def apply_engine_environment(environ=os.environ) -> None:
    """Set the engine's defaults (before torch and friends are imported); the user's own settings win."""
    for name, value in ENGINE_ENVIRONMENT_DEFAULTS.items():
        environ.setdefault(name, value)


def exit_quickly(code: int) -> None:
    """End a finished command's process with `code`, skipping the interpreter's teardown: unloading torch,
    transformers and hivemind took about a second after every `potluck generate`. Output and logs are flushed
    first; what a command starts (its DHT, p2pd, servers) it stops itself, and those children die with it anyway."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            pass
    os._exit(code)
