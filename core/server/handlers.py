"""The block server's stream handlers: inference sessions, pushes from the previous server, pings.

One long-lived stream per inference session per hop. Every message is validated before any work; a bad message
gets an error reply and the stream (and the server) keeps going. A session's steps come from its client's stream
or, with push, from the previous server's push stream; both feed one inbox so steps run in order.

Bounded: the inbox holds at most INBOX_MAX_ITEMS messages; when it is full the readers stop reading, so a peer
that sends faster than the session runs (or stops reading the replies) is slowed down by the stream itself
instead of parking its frames in our memory. Every send gives up after `send_timeout_seconds` (a peer that stops
reading ends its session instead of blocking it forever). Outputs are pushed only to a current member, at the
addresses its own announcement in the DHT gives: the addresses a client names are never dialled.

The handlers see the server through `SessionHost`, the part of it they need; core/server/server.py implements it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Protocol

import torch

from potluck.core.server.sessions import ServerSession, SessionError
from potluck.core.swarm.streams import PUSH_PROTOCOL, PeerUnreachableError, close_writer, open_stream
from potluck.core.wire import control, framing
from potluck.core.wire.control import DrainReason, ErrorCode
from potluck.core.wire.tensors import (
    FLAG_NO_FORWARD,
    Ack,
    Step,
    decode_frame,
    encode_ack,
    encode_step,
    max_chunk_tokens,
)

log = logging.getLogger(__name__)

OPEN_TIMEOUT_SECONDS = 10.0  # a client must send its open message this soon after opening the stream
PING_IDLE_SECONDS = 60.0  # a ping stream with no ping for this long is closed
INBOX_MAX_ITEMS = 4  # messages a session holds unread (a lock-step client needs 1-2); then the readers wait
DEFAULT_SEND_TIMEOUT_SECONDS = 20.0  # when the host's config does not say
_CLOSED = object()  # inbox marker: the client's stream ended


class SessionHost(Protocol):
    """What the handlers need of the block server."""

    hidden_size: int
    dtype_name: str
    p2p: object
    peer_id: str  # this server's own peer id: sessions its own node's chats open are not work for others
    stats: object  # ServerStats: tokens_served, tokens_for_others, refused, bytes_up, bytes_down
    config: object  # ServerConfig: session_idle_timeout_seconds, push_timeout_seconds

    @property
    def draining(self) -> bool: ...
    def open_session(self, request: control.Open, client_peer: str, handler: "SessionHandler") -> ServerSession: ...
    def close_session(self, session: ServerSession) -> None: ...
    def handler_for_push(self, session_id: str, pusher: str) -> "SessionHandler | None": ...
    async def compute(self, session: ServerSession, position: int, hidden: torch.Tensor) -> torch.Tensor: ...
    def record_json(self) -> dict: ...
    def admit(self, peer_id: str) -> bool: ...  # an active member (private swarm), or anyone (open swarm)
    async def announced_addrs(self, peer_id: str, block: int) -> tuple[str, ...] | None: ...


class SessionHandler:
    """Serves one client stream: one inference session."""

    def __init__(self, server: SessionHost, peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server, self.peer_id, self.reader, self.writer = server, peer_id, reader, writer
        self.session: ServerSession | None = None
        self.inbox: asyncio.Queue = asyncio.Queue(INBOX_MAX_ITEMS)
        self.push_writer: asyncio.StreamWriter | None = None

    async def send(self, body: bytes) -> None:
        """Send one frame to the client; asyncio.TimeoutError if it does not read it in time."""
        self.server.stats.bytes_up += await send_within(self.server, self.writer, body)

    def end_now(self, message: str, code: ErrorCode) -> None:
        """Tell the client why its session ends without waiting for it to read (the member check's sweep)."""
        self.server.stats.refused += 1
        try:
            body = control.encode(control.ErrorReply(message, code))
            self.writer.write(len(body).to_bytes(framing.HEADER_LEN, "big") + body)
        except (ConnectionError, RuntimeError):
            pass

    def drop_push(self) -> None:
        """Close the push stream (its peer is no longer a member); the next step reopens, or fails, with checks."""
        close_writer(self.push_writer)
        self.push_writer = None

    async def send_control(self, message: control.ControlMessage) -> None:
        await self.send(control.encode(message))

    async def send_error(self, message: str, code: ErrorCode, **fields) -> None:
        """Answer a refused request; every refusal is counted in the server's stats."""
        self.server.stats.refused += 1
        try:
            await self.send_control(control.ErrorReply(message, code, **fields))
        except (ConnectionError, RuntimeError, asyncio.TimeoutError):
            pass

    async def tell_drain(self, reason: DrainReason, message: str) -> None:
        """Ask the client to move this session elsewhere (the one place a drain notice is built)."""
        try:
            await self.send_control(control.DrainNotice(reason, message))
        except (ConnectionError, RuntimeError, asyncio.TimeoutError):
            pass

    async def serve(self) -> None:
        pump = None
        try:
            if not await self._open():
                return
            pump = asyncio.create_task(self._pump_client())
            await self._run_session()
        except (asyncio.IncompleteReadError, ConnectionError, RuntimeError):
            pass  # the client went away
        except asyncio.TimeoutError:
            log.info("ending a session of %s: it stopped reading its replies", self.peer_id[-8:])
        finally:
            if pump is not None:
                pump.cancel()
            close_writer(self.push_writer)
            if self.session is not None:
                self.server.close_session(self.session)
            close_writer(self.writer)

    async def _open(self) -> bool:
        try:
            body = await asyncio.wait_for(framing.receive(self.reader), OPEN_TIMEOUT_SECONDS)
            self.server.stats.bytes_down += len(body) + framing.HEADER_LEN
            message = control.decode(body) if body[:1] == framing.KIND_JSON else None
            if not isinstance(message, control.Open):
                raise framing.WireError("the first message must open a session")
            self.session = self.server.open_session(message, self.peer_id, self)
        except asyncio.TimeoutError:
            await self.send_error("no open message received in time", ErrorCode.OPEN_TIMEOUT)
            return False
        except framing.WireError as e:
            await self.send_error(str(e), ErrorCode.BAD_MESSAGE)
            return False
        except SessionError as e:
            await self.send_error(str(e), e.code)
            return False
        await self.send_control(control.Opened(dtype=self.server.dtype_name))
        return True

    async def _pump_client(self) -> None:
        """Read the client's stream into the inbox; a malformed frame is answered, not fatal."""
        try:
            while True:
                body = await framing.receive(self.reader)
                self.server.stats.bytes_down += len(body) + framing.HEADER_LEN
                try:
                    await self.inbox.put(decode_frame(body, hidden_size=self.server.hidden_size))
                except framing.WireError as e:
                    await self.send_error(str(e), ErrorCode.BAD_MESSAGE)
        except framing.WireError as e:  # an oversized frame: the stream cannot be resynchronised
            await self.send_error(str(e), ErrorCode.BAD_MESSAGE)
            await self.inbox.put(_CLOSED)
        except (asyncio.IncompleteReadError, ConnectionError, RuntimeError):
            await self.inbox.put(_CLOSED)

    async def _run_session(self) -> None:
        session = self.session
        while True:
            try:
                item = await asyncio.wait_for(self.inbox.get(), self.server.config.session_idle_timeout_seconds)
            except asyncio.TimeoutError:
                await self.send_error("session closed after being idle too long", ErrorCode.IDLE_TIMEOUT)
                return
            if item is _CLOSED or isinstance(item, control.Close):
                return
            if isinstance(item, Step):
                await self._step(session, item)
            elif isinstance(item, control.HistoryRequest):
                await self._send_history(session, item)
            elif isinstance(item, (control.SetNext, control.SetPrev)):
                await self._relink(session, item)
            else:
                await self.send_error(f"{type(item).__name__} is not accepted on a session stream", ErrorCode.BAD_MESSAGE)
            if self.server.draining:
                await self.tell_drain(DrainReason.LEAVING, "this server is draining")

    async def _step(self, session: ServerSession, step: Step) -> None:
        try:
            output = await self.server.compute(session, step.position, step.hidden)
        except SessionError as e:
            await self.send_error(str(e), e.code, step_id=step.step_id)
            return
        self.server.stats.tokens_served += step.n_tokens
        if session.client_peer != self.server.peer_id:
            self.server.stats.tokens_for_others += step.n_tokens
        result = Step(step.step_id, step.position, output)
        if step.flags & FLAG_NO_FORWARD:
            await self.send(encode_ack(Ack(step.step_id, step.position, step.n_tokens)))
            return
        if session.next_hop is None:
            await self.send(encode_step(result))
            return
        try:
            await self._push(session, result)
        except (PeerUnreachableError, ConnectionError, asyncio.TimeoutError, RuntimeError) as e:
            await self.send_error(f"could not push to the next server: {e}", ErrorCode.PUSH_FAILED,
                                  step_id=step.step_id, blame=session.next_hop.peer_id)
            close_writer(self.push_writer)
            self.push_writer = None
            return
        await self.send(encode_ack(Ack(step.step_id, step.position, step.n_tokens)))

    async def _push(self, session: ServerSession, result: Step) -> None:
        timeout = self.server.config.push_timeout_seconds
        if self.push_writer is None:
            hop = session.next_hop
            if not self.server.admit(hop.peer_id):
                raise PeerUnreachableError(f"{hop.peer_id[-8:]} is not a member of this swarm")
            addrs = await asyncio.wait_for(self.server.announced_addrs(hop.peer_id, session.stack.end), timeout)
            if addrs is None:  # the client's own list of addresses is never dialled
                raise PeerUnreachableError(f"{hop.peer_id[-8:]} announces no block {session.stack.end} in the swarm")
            _, self.push_writer = await open_stream(self.server.p2p, hop.peer_id, PUSH_PROTOCOL, addrs, timeout)
            await asyncio.wait_for(framing.send(self.push_writer, control.encode(control.PushOpen(hop.session_id))), timeout)
        sent = await asyncio.wait_for(framing.send(self.push_writer, encode_step(result)), timeout)
        self.server.stats.bytes_up += sent

    async def _relink(self, session: ServerSession, message: control.SetNext | control.SetPrev) -> None:
        """After a fail-over the client links this session to a replacement neighbour."""
        if isinstance(message, control.SetPrev):
            session.prev_peer = message.prev_peer
        else:
            session.next_hop = message.next
            close_writer(self.push_writer)  # the next push opens a stream to the new neighbour
            self.push_writer = None
        await self.send_control(control.Relinked())

    async def _send_history(self, session: ServerSession, message: control.HistoryRequest) -> None:
        try:
            history = session.history_upto(message.upto)
        except SessionError as e:
            await self.send_error(str(e), e.code)
            return
        chunk = max_chunk_tokens(history.shape[2], history.dtype)
        for start in range(0, history.shape[1], chunk):
            await self.send(encode_step(Step(message.request_id, start, history[:, start : start + chunk])))
        await self.send_control(control.HistoryEnd(message.upto, message.request_id))


async def serve_push(server: SessionHost, peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A previous server pushes one session's outputs here; they join that session's inbox."""
    try:
        body = await asyncio.wait_for(framing.receive(reader), OPEN_TIMEOUT_SECONDS)
        try:
            message = control.decode(body)
        except framing.WireError:
            message = None
        handler = server.handler_for_push(message.session_id, peer_id) if isinstance(message, control.PushOpen) else None
        if handler is None:
            server.stats.refused += 1
            await send_within(server, writer, control.encode(control.ErrorReply("no such session for this pusher",
                                                                                ErrorCode.NO_SUCH_SESSION)))
            return
        while True:
            body = await framing.receive(reader)
            server.stats.bytes_down += len(body) + framing.HEADER_LEN
            try:
                item = decode_frame(body, hidden_size=server.hidden_size)
            except framing.WireError as e:
                await handler.send_error(f"a bad push from the previous server: {e}", ErrorCode.BAD_MESSAGE, blame=peer_id)
                continue
            if isinstance(item, Step):
                await handler.inbox.put(item)  # a full inbox stops this reader: the pusher waits, then times out
    except (asyncio.IncompleteReadError, ConnectionError, RuntimeError, asyncio.TimeoutError, framing.WireError):
        pass
    finally:
        close_writer(writer)


async def serve_ping(server: SessionHost, peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer pings on one stream until it closes: the caller measures round trips and reads our record."""
    try:
        while True:
            body = await asyncio.wait_for(framing.receive(reader), PING_IDLE_SECONDS)
            if not isinstance(control.decode(body), control.Ping):
                raise framing.WireError("expected a ping")
            stats = dataclasses.asdict(server.stats)  # byte and token counters, for benchmarks and status
            await send_within(server, writer, control.encode(control.Pong(time.time(), server.record_json(), stats)))
    except (asyncio.IncompleteReadError, ConnectionError, RuntimeError, asyncio.TimeoutError, framing.WireError):
        pass
    finally:
        close_writer(writer)


async def send_within(server: SessionHost, writer: asyncio.StreamWriter, body: bytes) -> int:
    """framing.send, giving up after the host's send timeout (asyncio.TimeoutError): a peer that stops reading
    must not hold a handler (and what it buffered) forever."""
    timeout = getattr(server.config, "send_timeout_seconds", DEFAULT_SEND_TIMEOUT_SECONDS)
    return await asyncio.wait_for(framing.send(writer, body), timeout)
