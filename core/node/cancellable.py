"""A chat reply that `cancel` really stops, on this PC and on the friends' PCs.

The client's generate loop checks its cancel event only after each token, so a reply stuck in a long prompt, a
slow server or a fail-over kept the friends' servers computing after the owner pressed Stop or closed the chat.
`generate` here runs the client's coroutine on the client's own event loop and, as soon as `cancel` is set,
cancels it: the session's `finally` closes every server's stream (a Close message, then the stream), and each
server ends that session and frees its cache. What was streamed so far comes back as a cancelled reply.

Light: the client is passed in (core.client.model.DistributedModelForCausalLM).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from potluck.core.protocol import RouteHop, StopReason

POLL_SECONDS = 0.05  # how often the waiting thread looks at the cancel event
CLOSE_WAIT_SECONDS = 3.0  # after cancelling, how long to wait for the session to close its streams


@dataclass
class CancelledReply:
    """What a reply cancelled mid-step produced: the same fields the node reads from a GenerationResult."""

    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    stop_reason: StopReason = StopReason.CANCELLED
    route: tuple[RouteHop, ...] = ()
    tokens_per_second: float = 0.0


def generate(client, cancel: threading.Event, on_token: Callable[[int, str], None], **kwargs):
    """`client.generate(on_token=..., cancel=..., **kwargs)`, interrupted at once when `cancel` is set."""
    loop = getattr(getattr(client, "loop", None), "loop", None)
    if not isinstance(loop, asyncio.AbstractEventLoop):  # a client without a loop of its own (test stand-ins)
        return client.generate(on_token=on_token, cancel=cancel, **kwargs)
    reply = CancelledReply()

    def noting(token_id: int, text: str) -> None:
        reply.token_ids.append(int(token_id))
        reply.text += text
        on_token(token_id, text)

    request = client.request(**kwargs)
    done = threading.Event()
    future = asyncio.run_coroutine_threadsafe(_run(client, request, noting, cancel, done), loop)
    while True:
        try:
            return future.result(timeout=POLL_SECONDS)
        except concurrent.futures.TimeoutError:
            if not cancel.is_set():
                continue
        except concurrent.futures.CancelledError:
            done.wait(CLOSE_WAIT_SECONDS)
            return reply
        loop.call_soon_threadsafe(future.cancel)  # interrupts the step in flight; the session closes its streams


async def _run(client, request, on_token, cancel, done: threading.Event):
    try:
        return await client.agenerate(request, on_token=on_token, cancel=cancel)
    finally:
        done.set()  # the session's own `finally` (closing the servers' streams) has run
