"""A client's inference session over a chain of servers, with push and fail-over.

The session opens one stream per server. With push, a step goes to the first server, each server pushes its
output to the next and acknowledges to the client, and the last server returns the result: a token's hidden state
crosses each link once. Without push the client relays every hop itself.

Fail-over: when a server dies, stalls or refuses, the client bans it, finds other servers for exactly its
blocks, rebuilds their cache by replaying the inputs of every earlier token (taken from the previous server's
output history, or from the client's own embeddings for the first span), re-links the neighbours and retries
the step. Steps carry absolute positions and servers roll back to them, so a retry never double-counts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

import torch

from potluck.core import wire
from potluck.core.client.routing import RouteSpan
from potluck.core.swarm.records import ServerRecord
from potluck.core.swarm.streams import SESSION_PROTOCOL, PeerUnreachableError, close_writer, open_stream

log = logging.getLogger(__name__)

_CLOSED = "closed"


class SpanFailure(RuntimeError):
    """Server `index` of the chain failed; `peer_id` is the one to ban."""

    def __init__(self, index: int, peer_id: str, reason: str):
        super().__init__(f"server {peer_id[-8:]} failed: {reason}")
        self.index, self.peer_id, self.reason = index, peer_id, reason


class SessionRefused(RuntimeError):
    """A server refused the session for a reason a retry elsewhere may fix (cache full, draining)."""


@dataclass
class Connection:
    """The client's stream to one server of the chain."""

    span: RouteSpan
    record: ServerRecord
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    pump: asyncio.Task | None = None
    draining: bool = False  # the server asked us to move
    retry_drain_at: float = 0.0  # monotonic time to look for a replacement again
    drain_reason: str = ""  # "drain" (the server goes away) or "resize" (it keeps a smaller range)
    bytes_sent: int = 0
    bytes_received: int = 0

    async def send(self, body: bytes) -> None:
        self.bytes_sent += await wire.send(self.writer, body)

    def close(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
        close_writer(self.writer)


class RemoteChain:
    """The open streams of one session, and the operations on them; `InferenceSession` adds fail-over."""

    def __init__(self, p2p, model_uid: str, hidden_size: int, max_length: int, push: bool, timeout: float):
        self.p2p, self.model_uid, self.hidden_size = p2p, model_uid, hidden_size
        self.max_length, self.push, self.timeout = max_length, push, timeout
        self.connections: list[Connection] = []
        self.events: asyncio.Queue = asyncio.Queue()  # (connection, message) from every server
        self.acked: set[int] = set()  # chain indices that acknowledged the current step
        self._step_id = 0

    # ---- opening ------------------------------------------------------------------------------------------
    async def open_spans(self, spans: list[tuple[RouteSpan, ServerRecord]], index: int, next_conn: Connection | None,
                         prev_peer: str | None) -> list[Connection]:
        """Open sessions on `spans`, to sit at `index` of the chain, linked to `next_conn` when pushing."""
        new = [Connection(span, record) for span, record in spans]
        for i, conn in enumerate(new):
            following = new[i + 1] if i + 1 < len(new) else next_conn
            before = new[i - 1].span.peer_id if i > 0 else prev_peer
            try:
                await self._open_one(conn, index + i, following, before)
            except BaseException:
                for opened in new:
                    opened.close()
                raise
        return new

    async def _open_one(self, conn: Connection, index: int, following: Connection | None, prev_peer: str | None) -> None:
        span = conn.span
        try:
            conn.reader, conn.writer = await open_stream(self.p2p, span.peer_id, SESSION_PROTOCOL, conn.record.addrs, self.timeout)
            message = {
                "op": "open", "session_id": conn.session_id, "model": self.model_uid, "start": span.start_block,
                "end": span.end_block, "max_length": self.max_length,
                "next": self._next_field(following), "prev_peer": prev_peer if self.push else None,
            }
            await conn.send(wire.encode_json(message))
            reply = wire.decode(await asyncio.wait_for(wire.receive(conn.reader), self.timeout))
        except (PeerUnreachableError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, wire.WireError) as e:
            conn.close()
            raise SpanFailure(index, span.peer_id, f"could not open a session: {e or 'timed out'}") from None
        if not isinstance(reply, dict) or reply.get("op") != "opened":
            conn.close()
            reason = reply.get("message", "unexpected reply") if isinstance(reply, dict) else "unexpected reply"
            raise SpanFailure(index, span.peer_id, f"refused the session: {reason}")
        conn.pump = asyncio.create_task(self._pump(conn))

    def _next_field(self, following: Connection | None) -> dict | None:
        if not self.push or following is None:
            return None
        return {"peer_id": following.span.peer_id, "session_id": following.session_id, "addrs": list(following.record.addrs)}

    async def _pump(self, conn: Connection) -> None:
        try:
            while True:
                body = await wire.receive(conn.reader)
                conn.bytes_received += len(body) + wire.HEADER_LEN
                try:
                    message = wire.decode(body, hidden_size=self.hidden_size)
                except wire.WireError as e:
                    message = {"op": "error", "message": f"malformed reply: {e}", "code": "WireError"}
                if isinstance(message, dict) and message.get("op") == "drain":
                    conn.draining = True
                    conn.drain_reason = str(message.get("reason", "drain"))
                    continue
                await self.events.put((conn, message))
        except (asyncio.IncompleteReadError, ConnectionError, wire.WireError):
            await self.events.put((conn, _CLOSED))

    # ---- steps --------------------------------------------------------------------------------------------
    def _index(self, conn: Connection) -> int:
        return self.connections.index(conn) if conn in self.connections else -1

    async def _await(self, wanted, step_id: int, timeout: float):
        """Wait for the event `wanted(conn, msg)` accepts; errors and closed streams of the chain raise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            try:
                conn, message = await asyncio.wait_for(self.events.get(), max(left, 0.0))
            except asyncio.TimeoutError:
                raise TimeoutError from None
            index = self._index(conn)
            if index < 0:
                continue  # a connection already replaced
            if message == _CLOSED:
                raise SpanFailure(index, conn.span.peer_id, "the connection closed")
            if isinstance(message, dict) and message.get("op") == "error":
                if message.get("step_id") not in (None, step_id):
                    continue  # a stale error about an earlier attempt
                blame = message.get("blame")
                for i, other in enumerate(self.connections):
                    if blame and other.span.peer_id == blame and i > index:
                        raise SpanFailure(i, blame, f"unreachable from the previous server: {message.get('message')}")
                raise SpanFailure(index, conn.span.peer_id, str(message.get("message", "error")))
            if isinstance(message, wire.Ack) and message.step_id == step_id:
                self.acked.add(index)
            result = wanted(conn, message)
            if result is not None:
                return result

    async def run_step(self, hidden: torch.Tensor, position: int, timeout: float) -> torch.Tensor:
        """Run one step through the whole chain. Raises SpanFailure naming the server to blame."""
        self._step_id += 1
        step_id = self._step_id
        self.acked = set()
        if self.push:
            await self._send_step(0, wire.Step(step_id, position, hidden))
            last = self.connections[-1]
            try:
                return await self._await(
                    lambda c, m: m.hidden if c is last and isinstance(m, wire.Step) and m.step_id == step_id else None,
                    step_id, timeout,
                )
            except TimeoutError:  # blame the first server that did not acknowledge the step
                index = next((i for i in range(len(self.connections)) if i not in self.acked), len(self.connections) - 1)
                raise SpanFailure(index, self.connections[index].span.peer_id, "timed out") from None
        for index, conn in enumerate(self.connections):
            await self._send_step(index, wire.Step(step_id, position, hidden))
            try:
                hidden = await self._await(
                    lambda c, m, conn=conn: m.hidden if c is conn and isinstance(m, wire.Step) and m.step_id == step_id else None,
                    step_id, timeout,
                )
            except TimeoutError:
                raise SpanFailure(index, conn.span.peer_id, "timed out") from None
        return hidden

    async def _send_step(self, index: int, step: wire.Step) -> None:
        conn = self.connections[index]
        try:
            await conn.send(wire.encode_step(step))
        except (ConnectionError, RuntimeError) as e:
            raise SpanFailure(index, conn.span.peer_id, f"could not send: {e}") from None

    async def replay(self, conn: Connection, index: int, inputs: torch.Tensor, timeout: float) -> None:
        """Feed `inputs` (positions 0..n) to a fresh server without forwarding; wait until it has them all."""
        chunk = wire.max_chunk_tokens(self.hidden_size, inputs.dtype)
        for start in range(0, inputs.shape[1], chunk):
            self._step_id += 1
            step_id = self._step_id
            await conn.send(wire.encode_step(wire.Step(step_id, start, inputs[:, start : start + chunk], wire.FLAG_NO_FORWARD)))
            await self._await(lambda c, m: True if c is conn and isinstance(m, wire.Ack) and m.step_id == step_id else None, step_id, timeout)

    async def history(self, index: int, upto: int, timeout: float) -> torch.Tensor:
        """The outputs server `index` produced for positions [0, upto)."""
        conn = self.connections[index]
        self._step_id += 1
        request_id = self._step_id  # tags the reply: a late output of an abandoned step must not be taken for history
        await conn.send(wire.encode_json({"op": "history", "upto": upto, "id": request_id}))
        chunks: list[torch.Tensor] = []

        def collect(c, m):
            if c is not conn:
                return None
            if isinstance(m, wire.Step) and m.step_id == request_id:
                if m.position != sum(chunk.shape[1] for chunk in chunks):
                    raise SpanFailure(index, conn.span.peer_id, "sent its history out of order")
                chunks.append(m.hidden)
            elif isinstance(m, dict) and m.get("op") == "history_end" and m.get("id") == request_id:
                return True
            return None

        await self._await(collect, request_id, timeout)
        history = torch.cat(chunks, dim=1) if chunks else torch.empty(1, 0, self.hidden_size)
        if history.shape[1] != upto:
            raise SpanFailure(index, conn.span.peer_id, f"sent {history.shape[1]} tokens of history, not {upto}")
        return history

    async def relink(self, index: int) -> None:
        """Tell server `index - 1` to push to the (new) server at `index`, and that one who pushes to it."""
        if not self.push or index <= 0 or index >= len(self.connections):
            return
        before, after = self.connections[index - 1], self.connections[index]
        for conn, message in ((after, {"op": "set_prev", "prev_peer": before.span.peer_id}),
                              (before, {"op": "set_next", "next": self._next_field(after)})):
            await conn.send(wire.encode_json(message))
            await self._await(lambda c, m, conn=conn: True if c is conn and isinstance(m, dict) and m.get("op") == "relinked" else None,
                              -1, self.timeout)

    def bytes_total(self) -> tuple[int, int]:
        return sum(c.bytes_sent for c in self.connections), sum(c.bytes_received for c in self.connections)

    async def close(self) -> None:
        for conn in self.connections:
            try:
                await asyncio.wait_for(conn.send(wire.encode_json({"op": "close"})), 1.0)
            except (ConnectionError, RuntimeError, asyncio.TimeoutError):
                pass
            conn.close()
        self.connections = []
