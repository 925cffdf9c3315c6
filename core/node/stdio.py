"""The node process's edges: protocol lines out on the real stdout, commands in from stdin, logs to stderr and a
file, and a watch on the parent (the GUI). Standard library only: this runs before any heavy import.

stdout carries protocol lines and nothing else. `take_stdout` keeps a private copy of the stdout file descriptor
for them and points descriptor 1 (and `sys.stdout`) at stderr, so whatever a library or a child process prints
lands in the log instead of corrupting the protocol.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from potluck.core import protocol

log = logging.getLogger(__name__)

LOG_FILE_NAME = "node-process.log"  # the GUI keeps node.log (what it saw of us); this one is the node's own
LOG_FILE_MAX_BYTES = 5_000_000
PARENT_POLL_SECONDS = 1.0
PARENT_PID_ENV = "POTLUCK_PARENT_PID"  # optional: the GUI's pid, watched as well as our parent
TOO_LONG = b"<a line over the length limit>"  # what StdinReader hands on instead of an over-long line


def take_stdio() -> tuple[int, TextIO]:
    """(private stdin descriptor for commands, private stdout for protocol lines). Descriptors 0 and 1 and
    `sys.stdin`/`sys.stdout` are pointed at the null device and stderr, for libraries and child processes.

    Commands are read from a private descriptor with os.read, never through `sys.stdin`: a thread blocked in
    `sys.stdin.readline()` holds that object's lock, and a process forked meanwhile (hivemind forks its DHT)
    hangs when it closes its copy of `sys.stdin`."""
    sys.stdout.flush()
    command_fd = os.dup(0)  # dup'ed descriptors are not inherited by child programs
    protocol_fd = os.dup(1)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")
    sys.stdout = sys.stderr
    return command_fd, os.fdopen(protocol_fd, "w", encoding="utf-8", errors="strict", newline="\n")


class ProtocolWriter:
    """Writes events as protocol lines from any thread. A closed pipe (the GUI is gone) calls `on_closed` once."""

    def __init__(self, stream: TextIO, on_closed: Callable[[], None] = lambda: None):
        self._stream = stream
        self._lock = threading.Lock()
        self._on_closed = on_closed
        self.closed = False

    def set_on_closed(self, on_closed: Callable[[], None]) -> None:
        self._on_closed = on_closed

    def send(self, event: protocol.Event) -> bool:
        line = protocol.encode(event) + "\n"
        with self._lock:
            if self.closed:
                return False
            try:
                self._stream.write(line)
                self._stream.flush()
                return True
            except (OSError, ValueError):  # EPIPE / closed file: nobody reads us any more
                self.closed = True
        self._on_closed()
        return False


class StdinReader(threading.Thread):
    """Reads command lines from a descriptor on its own thread (so nothing ever blocks the event loop) and hands
    each to `on_line`; `on_line(None)` at end of input. A line longer than the protocol allows is replaced by
    `TOO_LONG` (that very object)."""

    def __init__(self, fd: int, on_line: Callable[[bytes | None], None]):
        super().__init__(name="potluck-node-stdin", daemon=True)
        self._fd, self._on_line = fd, on_line

    def run(self) -> None:
        limit = protocol.MAX_LINE_CHARS + 1
        pending, skipping = b"", False
        try:
            while chunk := os.read(self._fd, 1 << 16):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if skipping:
                        skipping = False  # the end of an over-long line, reported already
                    elif len(line) > limit:
                        self._on_line(TOO_LONG)
                    elif line.strip():
                        self._on_line(line)
                if len(pending) > limit:
                    if not skipping:
                        self._on_line(TOO_LONG)
                    pending, skipping = b"", True
        except OSError as exc:
            log.warning("reading commands failed: %s", exc)
        if pending.strip() and not skipping:
            self._on_line(pending)
        self._on_line(None)


class ParentWatch(threading.Thread):
    """Calls `on_gone` once when our parent process changes (we were orphaned) or the pid in POTLUCK_PARENT_PID
    disappears: an orphaned node must never keep holding memory."""

    def __init__(self, on_gone: Callable[[str], None], environ=os.environ, poll_seconds: float = PARENT_POLL_SECONDS):
        super().__init__(name="potluck-node-parent", daemon=True)
        self._on_gone, self._poll_seconds = on_gone, poll_seconds
        self._parent = os.getppid()
        text = environ.get(PARENT_PID_ENV, "").strip()
        self._watched = int(text) if text.isdigit() and int(text) > 0 else None

    def gone_reason(self) -> str | None:
        if os.getppid() != self._parent:
            return f"the parent process {self._parent} is gone"
        if self._watched is not None and not _pid_alive(self._watched):
            return f"the app (pid {self._watched}) is gone"
        return None

    def run(self) -> None:
        while True:
            reason = self.gone_reason()
            if reason is not None:
                self._on_gone(reason)
                return
            time.sleep(self._poll_seconds)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:  # Windows: os.kill(pid, 0) is not a probe there; trust the parent check alone
        return True
    try:  # Linux: a dead process its parent has not reaped yet still answers signals; its state says Z
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


# ---------------------------------------------------------------------------------------------- logging

_FORMAT = "%(levelname)s %(name)s: %(message)s"


def setup_logging(verbose: bool = False) -> None:
    """Our loggers to stderr (the GUI collects it); INFO for Potluck's own, WARNING for libraries."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("potluck").setLevel(logging.DEBUG if verbose else logging.INFO)


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log only its owner can read: every file it opens (the first, and each after a rotation) is
    created with mode 0600, and an older file found with wider permissions is narrowed."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if os.name == "posix":
                os.fchmod(fd, 0o600)
            return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise


def private_log_folder(folder: Path) -> None:
    """Create a log folder readable by this user only (0700). Logs name peers, addresses and paths. A folder that
    exists already keeps its mode (it may be one the user chose for other things too); the files are private."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


class LogFile:
    """The node's own log file in the owner's log folder (rotated once past 5 MB, mode 0600 in a folder made 0700);
    can move when log_dir changes. A folder that cannot be used is reported in the log, never fatal."""

    def __init__(self) -> None:
        self._handler: logging.Handler | None = None
        self.path: Path | None = None

    def use_folder(self, folder: Path) -> None:
        path = folder / LOG_FILE_NAME
        if path == self.path:
            return
        self.close()
        try:
            private_log_folder(folder)
            for old in (path, path.with_name(path.name + ".1")):
                if old.exists() and os.name == "posix":
                    os.chmod(old, 0o600)  # written by an older Potluck with the umask's mode
            handler = PrivateRotatingFileHandler(path, maxBytes=LOG_FILE_MAX_BYTES, backupCount=1, encoding="utf-8")
        except (OSError, ValueError) as exc:  # ValueError: a path with a NUL character in it
            log.warning("cannot write the log file %s: %s", path, getattr(exc, "strerror", None) or exc)
            return
        handler.setFormatter(logging.Formatter("%(asctime)s " + _FORMAT))
        logging.getLogger().addHandler(handler)
        self._handler, self.path = handler, path
        log.info("node log file: %s", path)

    def close(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler, self.path = None, None
