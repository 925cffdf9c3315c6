"""Driving the real node process (`python -m potluck.app.entry node`) over its stdin/stdout, as the GUI does."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from potluck.core import protocol

REPO = Path(__file__).resolve().parents[2]


def node_environment(home: Path, **extra: str) -> dict[str, str]:
    """Our environment with every per-user folder in `home` and no POTLUCK_* leftovers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POTLUCK_", "XDG_"))}
    env.update(POTLUCK_HOME=str(home), XDG_CONFIG_HOME=str(home / "xdg-config"), XDG_DATA_HOME=str(home / "xdg-data"),
               XDG_STATE_HOME=str(home / "xdg-state"), XDG_CACHE_HOME=str(home / "xdg-cache"),
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8",
               POTLUCK_HOST="127.0.0.1")
    env.update(extra)
    return env


def potluck_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    """`potluck ARGS…` as the user of the PC whose home is `home` (its config and data folders), output captured."""
    return subprocess.run([sys.executable, "-m", "potluck.app.entry", *args], cwd=REPO, env=node_environment(home),
                          capture_output=True, text=True, timeout=120, check=False)


class NodeUnderTest:
    """The real node as a child process; every stdout line must be a protocol event (else `garbage` records it)."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, verbose: bool = False):
        self.events: list[protocol.Event] = []
        self.garbage: list[str] = []
        self.stderr: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        command = [sys.executable, "-m", "potluck.app.entry", *(["-v"] if verbose else []), "node"]
        self.process = subprocess.Popen(command, cwd=REPO, env=env or node_environment(home), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._seen = 0  # events before this index were consumed by expect()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            try:
                event = protocol.decode_event(line)
            except protocol.ProtocolError:
                self.garbage.append(line.decode("utf-8", "replace"))
                continue
            self._queue.put(event)
        self._queue.put(None)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line.decode("utf-8", "replace").rstrip())

    def send(self, message: protocol.Command) -> None:
        self.send_raw(protocol.encode(message))

    def send_raw(self, line: str) -> None:
        self.process.stdin.write((line + "\n").encode("utf-8"))
        self.process.stdin.flush()

    def _pull(self, timeout: float) -> bool:
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        if event is None:
            self._queue.put(None)
            time.sleep(0.05)
            return False
        self.events.append(event)
        return True

    def expect(self, what: str, predicate: Callable[[protocol.Event], bool], timeout: float = 60.0) -> protocol.Event:
        """The first event after the last one expect() returned that matches; fails with the log tail if none."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._seen, len(self.events)):
                if predicate(self.events[index]):
                    self._seen = index + 1
                    return self.events[index]
            if time.monotonic() > deadline:
                self.fail(f"no {what} within {timeout:g} s")
            self._pull(0.2)

    def fail(self, why: str) -> None:
        recent = [e for e in self.events[self._seen:] if not isinstance(e, protocol.Stats)][-10:]
        raise AssertionError(f"{why}; events since: {recent}\nstderr tail:\n" + "\n".join(self.stderr[-40:]))

    def state(self, state: protocol.NodeState, timeout: float = 60.0) -> protocol.State:
        """The next `state` event for `state`; a `failed` state on the way fails at once (unless awaited)."""
        def match(e: protocol.Event) -> bool:
            if isinstance(e, protocol.State) and e.state is protocol.NodeState.FAILED and state is not e.state:
                self.fail(f"the node failed while we waited for {state.value}: {e.detail}")
            return isinstance(e, protocol.State) and e.state is state

        return self.expect(f"state {state.value}", match, timeout)

    def since_mark(self) -> list[protocol.Event]:
        return self.events[self._seen:]

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def close_stdin(self) -> None:
        self.process.stdin.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
