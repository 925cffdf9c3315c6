"""Loading progress for the app: downloads (bytes, from core/model/progress.py) and built blocks become `progress`
events (core/protocol_desktop.py). Called from the loading thread; `send` must be safe from any thread.

Downloads report many times a second; events go out at most every `interval_seconds` (the last of a file
always goes). Each built block always goes: it is what the bar counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from potluck.core import protocol
from potluck.core.model.progress import DownloadStep
from potluck.core.node.stats import blocks_words


class LoadProgress:
    def __init__(self, send: Callable[[protocol.Event], None], start_block: int, block_bytes: Sequence[int],
                 interval_seconds: float = 0.25, monotonic: Callable[[], float] = time.monotonic):
        self._send, self._start, self._block_bytes = send, start_block, list(block_bytes)
        self._interval, self._monotonic = interval_seconds, monotonic
        self._lock = threading.Lock()
        self._done_blocks = 0
        self._done_bytes = 0
        self._sent_at = float("-inf")

    @property
    def total_bytes(self) -> int:
        return sum(self._block_bytes)

    def begin(self) -> None:
        self._send(self._load_event(f"Loading {blocks_words([self._start]).lower()}"))

    def on_block(self, index: int) -> None:
        """load_blocks built block `index`."""
        with self._lock:
            offset = index - self._start
            if 0 <= offset < len(self._block_bytes):
                self._done_blocks += 1
                self._done_bytes += self._block_bytes[offset]
            left = len(self._block_bytes) - self._done_blocks
            text = f"Loaded {blocks_words([index]).lower()}" + (f"; {left} to go" if left else "")
            event = self._load_event(text)
        self._send(event)

    def on_download(self, step: DownloadStep) -> None:
        now = self._monotonic()
        finished = step.total_bytes and step.done_bytes >= step.total_bytes
        with self._lock:
            if not finished and now - self._sent_at < self._interval:
                return
            self._sent_at = now
        self._send(protocol.Progress(stage="download", done_bytes=step.done_bytes, total_bytes=step.total_bytes,
                                     text=f"Downloading {step.name}" if step.name else "Downloading the model"))

    def _load_event(self, text: str) -> protocol.Progress:
        return protocol.Progress(stage="load", done_bytes=self._done_bytes, total_bytes=self.total_bytes,
                                 done_blocks=self._done_blocks, total_blocks=len(self._block_bytes), text=text)
