"""NodeLogFile: the node's log lines (as NodeProcess reports them) appended to node.log in the log folder, with one
rotated copy (node.log.1) once the file passes `max_bytes`. The logs name peers, addresses and paths: the file is
created with mode 0600 (an older one found wider is narrowed) in a folder created with mode 0700."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TextIO

MAX_LOG_BYTES = 5_000_000


class NodeLogFile:
    def __init__(self, folder: Path, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.path = folder / "node.log"
        self._max_bytes = max_bytes
        self._handle: TextIO | None = None
        self.failed = ""  # why writing stopped, if it did (a log must never take the app down)

    def write(self, line: str) -> None:
        if self.failed:
            return
        try:
            if self._handle is None:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._handle = _open_private(self.path)
            self._handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
            self._handle.flush()
            if self._handle.tell() > self._max_bytes:
                self._rotate()
        except (OSError, ValueError) as exc:  # ValueError: a path with a NUL character in it
            self.failed = f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}"

    def _rotate(self) -> None:
        self.close()
        self.path.replace(self.path.with_name(self.path.name + ".1"))

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _open_private(path: Path) -> TextIO:
    """Open `path` for appending, readable and writable by this user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise
