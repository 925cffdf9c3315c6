"""Stop really stops (issue 14, item 10): a reply stuck in a step is interrupted at once and its session closes
its servers' streams (core/node/cancellable.py), on a client with its own event loop as the real one has."""

from __future__ import annotations

import asyncio
import threading
import time

from potluck.core.client.loop_thread import LoopThread
from potluck.core.node import cancellable
from potluck.core.protocol import StopReason


class StuckClient:
    """Streams two tokens, then waits forever for a server (a slow friend, a long prompt, a fail-over)."""

    def __init__(self):
        self.loop = LoopThread("test-client-loop")
        self.closed = threading.Event()  # what generate_tokens' `finally: await session.close()` does
        self.requests = []

    def request(self, **kwargs):
        self.requests.append(kwargs)
        return kwargs

    async def agenerate(self, request, *, on_token=None, cancel=None):
        try:
            on_token(11, "Hel")
            on_token(12, "lo")
            await asyncio.sleep(3600)  # a step nobody answers
        finally:
            await asyncio.sleep(0.01)  # closing the streams takes a moment
            self.closed.set()


def test_cancel_interrupts_a_stuck_step_and_closes_the_session():
    client = StuckClient()
    cancel = threading.Event()
    streamed = []
    result = {}
    worker = threading.Thread(target=lambda: result.update(reply=cancellable.generate(
        client, cancel, lambda token_id, text: streamed.append(text), prompt="hi", max_new_tokens=9)))
    worker.start()
    while len(streamed) < 2:
        time.sleep(0.01)
    began = time.monotonic()
    cancel.set()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - began < 2
    assert client.closed.is_set()  # the servers' sessions were closed
    reply = result["reply"]
    assert (reply.text, reply.token_ids, reply.stop_reason) == ("Hello", [11, 12], StopReason.CANCELLED)
    assert client.requests == [{"prompt": "hi", "max_new_tokens": 9}]
    client.loop.stop()


def test_a_finished_reply_comes_back_unchanged():
    class QuickClient(StuckClient):
        async def agenerate(self, request, *, on_token=None, cancel=None):
            on_token(1, "ok")
            return "the result"

    client = QuickClient()
    assert cancellable.generate(client, threading.Event(), lambda *a: None, prompt="x") == "the result"
    client.loop.stop()


def test_a_client_without_a_loop_uses_its_own_generate():
    class Plain:
        def generate(self, **kwargs):
            return sorted(kwargs)

    assert cancellable.generate(Plain(), threading.Event(), print, prompt="x") == ["cancel", "on_token", "prompt"]
