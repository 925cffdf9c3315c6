"""How the GUI starts its node process, and when it restarts one: pure functions over data, no I/O.

The node is the same program run with the `node` sub-command. `POTLUCK_NODE_COMMAND` replaces the program part
(for example ``wsl -d Ubuntu -- potluck`` to drive a node living in WSL2 on Windows).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from potluck.core.program import program_command

NODE_SUBCOMMAND = "node"
NODE_COMMAND_ENV = "POTLUCK_NODE_COMMAND"  # optional override of the program that runs the node
SECRET_ENV_PREFIX = "POTLUCK_"


def node_command(
    environ: Mapping[str, str] | None = None, frozen: bool | None = None, executable: str | None = None
) -> list[str]:
    """The full node command line. Secrets never appear here; they travel in the environment."""
    environ = {} if environ is None else environ
    override = environ.get(NODE_COMMAND_ENV, "").strip()
    if override:
        program = shlex.split(override)
    else:
        frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
        program = program_command(frozen, executable or sys.executable)
    return [*program, NODE_SUBCOMMAND]


def node_environment(base: Mapping[str, str], secrets: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: ours plus the POTLUCK_* secrets, with Python output unbuffered and UTF-8."""
    for name in secrets:
        if not name.startswith(SECRET_ENV_PREFIX):
            raise ValueError(f"secret variables must start with {SECRET_ENV_PREFIX}: {name}")
    env = dict(base)
    env.update(secrets)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@dataclass
class RestartPolicy:
    """At most `max_restarts` automatic restarts within `window_seconds`; the wait doubles after each one."""

    max_restarts: int = 3
    window_seconds: float = 600.0
    first_delay_seconds: float = 1.0
    max_delay_seconds: float = 30.0
    restart_times: list[float] = field(default_factory=list)  # monotonic times of past restarts

    def next_delay_seconds(self, now: float) -> float | None:
        """Seconds to wait before the next restart, or None when the budget is spent (give up)."""
        recent = [t for t in self.restart_times if now - t < self.window_seconds]
        if len(recent) >= self.max_restarts:
            return None
        return min(self.first_delay_seconds * 2 ** len(recent), self.max_delay_seconds)

    def record_restart(self, now: float) -> None:
        self.restart_times = [t for t in self.restart_times if now - t < self.window_seconds] + [now]

    def restarts_in_window(self, now: float) -> int:
        return sum(1 for t in self.restart_times if now - t < self.window_seconds)

    def reset(self) -> None:
        self.restart_times = []


@dataclass(frozen=True)
class NodeTimeouts:
    """How long the process owner waits at each step, milliseconds."""

    hello_ms: int = 60_000  # from launch to the node's hello line (it is written before heavy imports)
    shutdown_ms: int = 20_000  # after the shutdown command, before terminate (the node drains briefly first)
    terminate_ms: int = 5_000  # after terminate, before kill
    kill_ms: int = 5_000  # after kill, before we stop waiting and report the process as gone
