"""The streams of one inference session: one per server of the chain, and the steps, replays and relinks on them.

`StreamChain` opens one `ServerStream` per span of the route. With push, a step goes to the first server, each server pushes its
output to the next and acknowledges to the client, and the last server returns the result: a token's hidden state
crosses each link once. Without push the client relays every hop itself.

A failing server surfaces as `SpanFailure` naming the chain index and the peer to blame; core/client/inference.py
replaces it (fail-over). Steps carry absolute positions and servers roll back to them, so a retry never
double-counts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

import torch

from potluck.core.client.routing import RouteSpan
from potluck.core.swarm.records import ServerRecord
from potluck.core.swarm.streams import SESSION_PROTOCOL, PeerUnreachableError, close_writer, open_stream
from potluck.core.wire import control, framing
from potluck.core.wire.control import DrainReason
from potluck.core.wire.tensors import FLAG_NO_FORWARD, Ack, Step, decode_frame, encode_step, max_chunk_tokens

log = logging.getLogger(__name__)

_CLOSED = "closed"


class SpanFailure(RuntimeError):
    """Server `index` of the chain failed; `peer_id` is the one to ban."""

    def __init__(self, index: int, peer_id: str, reason: str):
        super().__init__(f"server {peer_id[-8:]} failed: {reason}")
        self.index, self.peer_id, self.reason = index, peer_id, reason


@dataclass
class ServerStream:
    """The client's stream to one server of the chain, for one span of blocks."""

    span: RouteSpan
    record: ServerRecord
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    pump: asyncio.Task | None = None
    drain_reason: DrainReason | None = None  # set when the server asked us to move
    retry_drain_at: float = 0.0  # monotonic time to look for a replacement again
    bytes_sent: int = 0
    bytes_received: int = 0

    async def send(self, body: bytes) -> None:
        self.bytes_sent += await framing.send(self.writer, body)

    async def send_control(self, message: control.ControlMessage) -> None:
        await self.send(control.encode(message))

    def close(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
        close_writer(self.writer)


class StreamChain:
    """The open streams of one session, and the operations on them; `InferenceSession` adds fail-over."""

    def __init__(self, p2p, model_uid: str, hidden_size: int, max_length: int, push: bool, timeout: float):
        self.p2p, self.model_uid, self.hidden_size = p2p, model_uid, hidden_size
        self.max_length, self.push, self.timeout = max_length, push, timeout
        self.streams: list[ServerStream] = []
        self.events: asyncio.Queue = asyncio.Queue()  # (stream, message) from every server
        self.acked: set[int] = set()  # chain indices that acknowledged the current step
        self._step_id = 0

    # ---- opening ------------------------------------------------------------------------------------------
    async def open_spans(self, spans: list[tuple[RouteSpan, ServerRecord]], index: int,
                         next_stream: ServerStream | None, prev_peer: str | None) -> list[ServerStream]:
        """Open sessions on `spans`, to sit at `index` of the chain, linked to `next_stream` when pushing."""
        new = [ServerStream(span, record) for span, record in spans]
        for i, stream in enumerate(new):
            following = new[i + 1] if i + 1 < len(new) else next_stream
            before = new[i - 1].span.peer_id if i > 0 else prev_peer
            try:
                await self._open_one(stream, index + i, following, before)
            except BaseException:
                for opened in new:
                    opened.close()
                raise
        return new

    async def _open_one(self, stream: ServerStream, index: int, following: ServerStream | None,
                        prev_peer: str | None) -> None:
        span = stream.span
        try:
            stream.reader, stream.writer = await open_stream(self.p2p, span.peer_id, SESSION_PROTOCOL, stream.record.addrs, self.timeout)
            await stream.send_control(control.Open(
                session_id=stream.session_id, model=self.model_uid, start=span.start_block, end=span.end_block,
                max_length=self.max_length, next=self._next_hop(following), prev_peer=prev_peer if self.push else None,
            ))
            reply = decode_frame(await asyncio.wait_for(framing.receive(stream.reader), self.timeout))
        except (PeerUnreachableError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                framing.WireError) as e:
            stream.close()
            raise SpanFailure(index, span.peer_id, f"could not open a session: {e or 'timed out'}") from None
        if not isinstance(reply, control.Opened):
            stream.close()
            reason = reply.message if isinstance(reply, control.ErrorReply) else "unexpected reply"
            raise SpanFailure(index, span.peer_id, f"refused the session: {reason}")
        stream.pump = asyncio.create_task(self._pump(stream))

    def _next_hop(self, following: ServerStream | None) -> control.NextHop | None:
        if not self.push or following is None:
            return None
        return control.NextHop(following.span.peer_id, following.session_id, tuple(following.record.addrs)[:16])

    async def _pump(self, stream: ServerStream) -> None:
        try:
            while True:
                body = await framing.receive(stream.reader)
                stream.bytes_received += len(body) + framing.HEADER_LEN
                try:
                    message = decode_frame(body, hidden_size=self.hidden_size)
                except framing.WireError as e:
                    message = control.ErrorReply(f"malformed reply: {e}", control.ErrorCode.BAD_MESSAGE)
                if isinstance(message, control.DrainNotice):
                    stream.drain_reason = message.reason
                    continue
                await self.events.put((stream, message))
        except (asyncio.IncompleteReadError, ConnectionError, framing.WireError):
            await self.events.put((stream, _CLOSED))

    # ---- steps --------------------------------------------------------------------------------------------
    def _index(self, stream: ServerStream) -> int:
        return self.streams.index(stream) if stream in self.streams else -1

    async def _await(self, wanted, step_id: int, timeout: float):
        """Wait for the event `wanted(stream, msg)` accepts; errors and closed streams of the chain raise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            try:
                stream, message = await asyncio.wait_for(self.events.get(), max(left, 0.0))
            except asyncio.TimeoutError:
                raise TimeoutError from None
            index = self._index(stream)
            if index < 0:
                continue  # a connection already replaced
            if message == _CLOSED:
                raise SpanFailure(index, stream.span.peer_id, "the connection closed")
            if isinstance(message, control.ErrorReply):
                if message.step_id not in (None, step_id):
                    continue  # a stale error about an earlier attempt
                for i, other in enumerate(self.streams):
                    if message.blame and other.span.peer_id == message.blame and i > index:
                        raise SpanFailure(i, message.blame, f"unreachable from the previous server: {message.message}")
                raise SpanFailure(index, stream.span.peer_id, message.message)
            if isinstance(message, Ack) and message.step_id == step_id:
                self.acked.add(index)
            result = wanted(stream, message)
            if result is not None:
                return result

    async def run_step(self, hidden: torch.Tensor, position: int, timeout: float) -> torch.Tensor:
        """Run one step through the whole chain. Raises SpanFailure naming the server to blame."""
        self._step_id += 1
        step_id = self._step_id
        self.acked = set()
        if self.push:
            await self._send_step(0, Step(step_id, position, hidden))
            last = self.streams[-1]
            try:
                return await self._await(
                    lambda c, m: m.hidden if c is last and isinstance(m, Step) and m.step_id == step_id else None,
                    step_id, timeout,
                )
            except TimeoutError:  # blame the first server that did not acknowledge the step
                index = next((i for i in range(len(self.streams)) if i not in self.acked), len(self.streams) - 1)
                raise SpanFailure(index, self.streams[index].span.peer_id, "timed out") from None
        for index, stream in enumerate(self.streams):
            await self._send_step(index, Step(step_id, position, hidden))
            try:
                hidden = await self._await(
                    lambda c, m, stream=stream: m.hidden if c is stream and isinstance(m, Step) and m.step_id == step_id else None,
                    step_id, timeout,
                )
            except TimeoutError:
                raise SpanFailure(index, stream.span.peer_id, "timed out") from None
        return hidden

    async def _send_step(self, index: int, step: Step) -> None:
        stream = self.streams[index]
        try:
            await stream.send(encode_step(step))
        except (ConnectionError, RuntimeError) as e:
            raise SpanFailure(index, stream.span.peer_id, f"could not send: {e}") from None

    async def replay(self, stream: ServerStream, index: int, inputs: torch.Tensor, timeout: float) -> None:
        """Feed `inputs` (positions 0..n) to a fresh server without forwarding; wait until it has them all."""
        chunk = max_chunk_tokens(self.hidden_size, inputs.dtype)
        for start in range(0, inputs.shape[1], chunk):
            self._step_id += 1
            step_id = self._step_id
            await stream.send(encode_step(Step(step_id, start, inputs[:, start : start + chunk], FLAG_NO_FORWARD)))
            await self._await(lambda c, m: True if c is stream and isinstance(m, Ack) and m.step_id == step_id else None, step_id, timeout)

    async def history(self, index: int, upto: int, timeout: float) -> torch.Tensor:
        """The outputs server `index` produced for positions [0, upto)."""
        stream = self.streams[index]
        self._step_id += 1
        request_id = self._step_id  # tags the reply: a late output of an abandoned step must not be taken for history
        await stream.send_control(control.HistoryRequest(upto, request_id))
        chunks: list[torch.Tensor] = []

        def collect(c, m):
            if c is not stream:
                return None
            if isinstance(m, Step) and m.step_id == request_id:
                if m.position != sum(chunk.shape[1] for chunk in chunks):
                    raise SpanFailure(index, stream.span.peer_id, "sent its history out of order")
                chunks.append(m.hidden)
            elif isinstance(m, control.HistoryEnd) and m.request_id == request_id:
                return True
            return None

        await self._await(collect, request_id, timeout)
        history = torch.cat(chunks, dim=1) if chunks else torch.empty(1, 0, self.hidden_size)
        if history.shape[1] != upto:
            raise SpanFailure(index, stream.span.peer_id, f"sent {history.shape[1]} tokens of history, not {upto}")
        return history

    async def relink(self, index: int) -> None:
        """Tell server `index - 1` to push to the (new) server at `index`, and that one who pushes to it."""
        if not self.push or index <= 0 or index >= len(self.streams):
            return
        before, after = self.streams[index - 1], self.streams[index]
        for stream, message in ((after, control.SetPrev(before.span.peer_id)), (before, control.SetNext(self._next_hop(after)))):
            await stream.send_control(message)
            await self._await(lambda c, m, stream=stream: True if c is stream and isinstance(m, control.Relinked) else None,
                              -1, self.timeout)

    def bytes_total(self) -> tuple[int, int]:
        return sum(c.bytes_sent for c in self.streams), sum(c.bytes_received for c in self.streams)

    async def close(self) -> None:
        for stream in self.streams:
            try:
                await asyncio.wait_for(stream.send_control(control.Close()), 1.0)
            except (ConnectionError, RuntimeError, asyncio.TimeoutError):
                pass
            stream.close()
        self.streams = []
