"""An asyncio event loop on a daemon thread: the client's network work runs there while callers block."""

from __future__ import annotations

import asyncio
import threading


class LoopThread:
    """`run(coro)` waits for the coroutine's result from any other thread; `stop()` cancels what is left."""

    def __init__(self, name: str = "potluck-client-loop"):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_rest():
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        if self.thread.is_alive():
            try:
                self.run(cancel_rest(), timeout=5)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(timeout=5)
