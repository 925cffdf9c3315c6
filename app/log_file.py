"""NodeLogFile: the node's log lines (as NodeProcess reports them) appended to node.log in the log folder, with one
rotated copy (node.log.1) once the file passes `max_bytes`."""

from __future__ import annotations

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
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
            self._handle.flush()
            if self._handle.tell() > self._max_bytes:
                self._rotate()
        except OSError as exc:
            self.failed = f"cannot write {self.path}: {exc.strerror}"

    def _rotate(self) -> None:
        self.close()
        self.path.replace(self.path.with_name(self.path.name + ".1"))

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
