"""One request's generation inside the API server: a task on the server's loop, its pieces in a queue, and the
ways it ends early (the client left, the server stops).

`Runs` admits generations: at most `max_running` run at once (each holds a session on every server of its route),
up to `max_waiting` more wait their turn in order, and beyond that a request is refused with 429. Standard library
only.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from potluck.core.api.engine import Engine, Outcome
from potluck.core.api.schema import ApiError, CompletionRequest
from potluck.core.protocol import StopReason

CANCEL_GRACE_SECONDS = 2.0  # after a cancel, the reply normally ends at its next token; then it is cut off
DISCONNECT_POLL_SECONDS = 0.25  # how often a waiting request checks that its client is still there
MAX_RUNNING = 8
MAX_WAITING = 64


class ClientGone(Exception):
    """The client disconnected before its reply was ready."""


@dataclass
class RunStats:
    """What the server did so far (the node's stats and the tests read it)."""
    active: int = 0  # generations running or waiting
    finished: int = 0
    cancelled: int = 0  # ended early because the client left or the server stopped
    failed: int = 0
    completion_tokens: int = 0


class Runs:
    def __init__(self, engine: Engine, *, max_running: int = MAX_RUNNING, max_waiting: int = MAX_WAITING):
        self.engine = engine
        self.stats = RunStats()
        self._max_waiting = max_waiting
        self._slots: asyncio.Semaphore | None = None  # made on the server's loop
        self._max_running = max_running
        self._waiting = 0
        self._live: set[Run] = set()

    def start(self, request: CompletionRequest) -> Run:
        """Start generating (or queue). Raises ApiError 429 when too many requests wait already."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_running)
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise ApiError(429, f"{self._max_running} replies are running and {self._waiting} more wait: try again "
                           "in a moment", code="too_many_requests")
        run = Run(self, request)
        self._live.add(run)
        self.stats.active += 1
        return run

    def cancel_all(self) -> None:
        for run in list(self._live):
            run.cancel()

    async def _generate(self, run: Run) -> Outcome:
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            if run.cancel_event.is_set():
                return Outcome("", StopReason.CANCELLED, 0, [])
            return await self.engine.run(run.request, run.add_piece, run.cancel_event)
        finally:
            self._slots.release()

    def _ended(self, run: Run, outcome: Outcome | None) -> None:
        self._live.discard(run)
        self.stats.active -= 1
        if outcome is None:
            self.stats.failed += 1
            return
        self.stats.completion_tokens += outcome.completion_tokens
        if outcome.stop_reason is StopReason.CANCELLED or run.cancel_event.is_set():
            self.stats.cancelled += 1
        else:
            self.stats.finished += 1


class Run:
    """One generation: `pieces()` yields its text as it comes; `outcome()` waits for the end."""

    def __init__(self, runs: Runs, request: CompletionRequest):
        self.request = request
        self.cancel_event = threading.Event()
        self._runs = runs
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()  # None: the end
        self._started = asyncio.Event()  # the first piece came, or the generation ended
        self._done = asyncio.Event()
        self.task = asyncio.create_task(self._main())

    async def _main(self) -> Outcome:
        outcome = None
        try:
            outcome = await self._runs._generate(self)
            return outcome
        except asyncio.CancelledError:
            outcome = Outcome("", StopReason.CANCELLED, 0, [])
            raise
        finally:
            self._runs._ended(self, outcome)
            self._queue.put_nowait(None)
            self._started.set()
            self._done.set()

    def add_piece(self, text: str) -> None:
        self._queue.put_nowait(text)
        self._started.set()

    def cancel(self) -> None:
        """Stop generating: at the next token, or cut off after CANCEL_GRACE_SECONDS."""
        if self.task.done() or self.cancel_event.is_set():
            return
        self.cancel_event.set()
        asyncio.get_running_loop().call_later(CANCEL_GRACE_SECONDS, self.task.cancel)

    async def wait_started(self, disconnected: Callable[[], Awaitable[bool]]) -> None:
        """Until the first piece (or the end); raises ClientGone (and cancels) if the client leaves meanwhile."""
        await self._wait(self._started, disconnected)

    async def outcome(self, disconnected: Callable[[], Awaitable[bool]]) -> Outcome:
        """The finished reply (the engine's exception if it failed); ClientGone if the client leaves first."""
        await self._wait(self._done, disconnected)
        return self.task.result()

    async def pieces(self):
        """The reply's pieces until its end (then see `task`)."""
        while (piece := await self._queue.get()) is not None:
            yield piece

    async def _wait(self, event: asyncio.Event, disconnected: Callable[[], Awaitable[bool]]) -> None:
        while not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), DISCONNECT_POLL_SECONDS)
            except asyncio.TimeoutError:
                if await disconnected():
                    self.cancel()
                    raise ClientGone() from None
