"""A swarm of block servers on this machine, each its own process: for the demo, the self-test, tests and benchmarks.

Each server is the real `potluck serve` program; nothing here is a stand-in. Servers are stopped with SIGTERM
(drain, announce offline) and killed if they do not exit in time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

from potluck.core.program import ENGINE_ENVIRONMENT_DEFAULTS, program_command

READY_TIMEOUT_SECONDS = 120.0


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**ENGINE_ENVIRONMENT_DEFAULTS, "PYTHONUNBUFFERED": "1", **os.environ}  # the caller's settings win
    env.update(extra or {})
    return env


@dataclass
class ServerProcess:
    args: list[str]
    process: subprocess.Popen
    maddrs: list[str] = field(default_factory=list)
    peer_id: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    lines: deque = field(default_factory=lambda: deque(maxlen=200))

    def _read(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            match = re.search(r"(/ip4/\S+/p2p/(\w+))", line)
            if match and not self.ready.is_set():
                self.maddrs.append(match.group(1))
                self.peer_id = match.group(2)
            if re.search(r"\bready\b", line):
                self.ready.set()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(list(self.lines)[-lines:])

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


class LocalSwarm:
    """Start servers for `ranges` of `model` on loopback; the first bootstraps the swarm."""

    def __init__(self, model: str, ranges: Sequence[tuple[int, int]], *, dtype: str = "float32",
                 extra_args: Sequence[str] = (), env: dict[str, str] | None = None, host: str = "127.0.0.1"):
        self.model, self.ranges, self.dtype = model, list(ranges), dtype
        self.extra_args, self.env, self.host = list(extra_args), env, host
        self.servers: list[ServerProcess] = []

    @property
    def initial_peers(self) -> list[str]:
        return [m for s in self.servers[:1] for m in s.maddrs]

    def start(self) -> "LocalSwarm":
        """Start the first server, then the others side by side (each needs the first to bootstrap)."""
        try:
            if self.ranges:
                self._wait_ready(self._launch(*self.ranges[0]))
            for server in [self._launch(start, end) for start, end in self.ranges[1:]]:
                self._wait_ready(server)
        except BaseException:
            self.stop()
            raise
        return self

    def add_server(self, start: int, end: int, *extra: str, host: str | None = None, prefix: Sequence[str] = ()) -> ServerProcess:
        return self._wait_ready(self._launch(start, end, *extra, host=host, prefix=prefix))

    def _launch(self, start: int, end: int, *extra: str, host: str | None = None, prefix: Sequence[str] = ()) -> ServerProcess:
        """Start one server; `prefix` wraps the command (e.g. `ip netns exec NS` to run it on another host)."""
        args = [*prefix, *program_command(), "serve", "--model", self.model, "--blocks", f"{start}:{end}",
                "--host", host or self.host, "--dtype", self.dtype, *self.extra_args, *extra]
        args += ["--initial-peers", *self.initial_peers] if self.servers else ["--new-swarm"]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=child_environment(self.env), start_new_session=True)
        server = ServerProcess(args, process)
        threading.Thread(target=server._read, daemon=True).start()
        self.servers.append(server)
        return server

    def _wait_ready(self, server: ServerProcess) -> ServerProcess:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not server.ready.wait(0.1):
            if server.process.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"a server did not start ({' '.join(server.args[-8:])}):\n{server.log_tail()}")
        return server

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def __enter__(self) -> "LocalSwarm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def split_blocks(num_blocks: int, num_servers: int) -> list[tuple[int, int]]:
    """Consecutive ranges of nearly equal size covering [0, num_blocks)."""
    if not 1 <= num_servers <= num_blocks:
        raise ValueError(f"cannot split {num_blocks} blocks among {num_servers} servers")
    bounds = [round(i * num_blocks / num_servers) for i in range(num_servers + 1)]
    return list(zip(bounds[:-1], bounds[1:]))
