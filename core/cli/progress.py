"""A progress bar on the terminal for `potluck serve`: downloading the model's files and loading the blocks.

One line rewritten in place (carriage return) on stderr, so stdout keeps only what tools read (addresses, `ready`).
Fed by core/model/progress.py (download steps) and load_blocks' `on_block(index)`; called from the loading thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from potluck.core.model.progress import DownloadStep, terminal_bar
from potluck.core.numbers import format_bytes


class TerminalProgress:
    def __init__(self, stream: TextIO, interval_seconds: float = 0.1, monotonic: Callable[[], float] = time.monotonic):
        self._stream, self._interval, self._monotonic = stream, interval_seconds, monotonic
        self._lock = threading.Lock()
        self._block_bytes: list[int] = []
        self._start = 0
        self._done_blocks = 0
        self._done_bytes = 0
        self._shown_at = float("-inf")
        self._width = 0

    def begin(self, start_block: int, block_bytes: Sequence[int]) -> None:
        self._start, self._block_bytes = start_block, list(block_bytes)
        self._show(self._load_line(), force=True)

    def on_download(self, step: DownloadStep) -> None:
        finished = bool(step.total_bytes) and step.done_bytes >= step.total_bytes
        fraction = step.done_bytes / step.total_bytes if step.total_bytes else 0.0
        sizes = f"{format_bytes(step.done_bytes)} of {format_bytes(step.total_bytes)}" if step.total_bytes else \
            format_bytes(step.done_bytes)
        self._show(f"Downloading {step.name} {terminal_bar(fraction)} {sizes}", force=finished)

    def on_block(self, index: int) -> None:
        with self._lock:
            offset = index - self._start
            if 0 <= offset < len(self._block_bytes):
                self._done_blocks += 1
                self._done_bytes += self._block_bytes[offset]
        self._show(self._load_line(), force=True)
        if self._done_blocks == len(self._block_bytes):
            self.end()

    def end(self) -> None:
        with self._lock:
            if self._width:
                self._stream.write("\n")
                self._stream.flush()
                self._width = 0

    def _load_line(self) -> str:
        total = sum(self._block_bytes)
        fraction = self._done_bytes / total if total else 0.0
        return (f"Loading blocks {self._done_blocks}/{len(self._block_bytes)} {terminal_bar(fraction)} "
                f"{format_bytes(self._done_bytes)} of {format_bytes(total)}")

    def _show(self, line: str, force: bool = False) -> None:
        with self._lock:
            now = self._monotonic()
            if not force and now - self._shown_at < self._interval:
                return
            self._shown_at = now
            padding = " " * max(0, self._width - len(line))
            self._stream.write("\r" + line + padding)
            self._stream.flush()
            self._width = len(line)
