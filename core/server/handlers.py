"""The block server's stream handlers: inference sessions, pushes from the previous server, pings.

One long-lived stream per inference session per hop. Every message is validated before any work; a bad message
gets an error reply and the stream (and the server) keeps going. A session's steps come from its client's stream
or, with push, from the previous server's push stream; both feed one inbox so steps run in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from potluck.core import wire
from potluck.core.server.sessions import NextHop, ServerSession, SessionError
from potluck.core.swarm.streams import PUSH_PROTOCOL, PeerUnreachableError, close_writer, open_stream

if TYPE_CHECKING:
    from potluck.core.server.server import BlockServer

log = logging.getLogger(__name__)

OPEN_TIMEOUT_SECONDS = 10.0  # a client must send its open message this soon after opening the stream
MAX_SESSION_ID_LENGTH = 64
_CLOSED = object()  # inbox marker: the client's stream ended


class SessionHandler:
    """Serves one client stream: an inference session, or a one-off forward pass."""

    def __init__(self, server: "BlockServer", peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server, self.peer_id, self.reader, self.writer = server, peer_id, reader, writer
        self.session: ServerSession | None = None
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.push_writer: asyncio.StreamWriter | None = None

    async def send(self, body: bytes) -> None:
        self.server.stats.bytes_up += await wire.send(self.writer, body)

    async def send_error(self, message: str, **fields: Any) -> None:
        """Answer a refused request; every refusal is counted in the server's stats."""
        self.server.stats.refused += 1
        try:
            await self.send(wire.encode_json({"op": "error", "message": message, **fields}))
        except (ConnectionError, RuntimeError):
            pass

    async def serve(self) -> None:
        pump = None
        try:
            opened = await self._open()
            if not opened:
                return
            pump = asyncio.create_task(self._pump_client())
            await self._run_session()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        finally:
            if pump is not None:
                pump.cancel()
            close_writer(self.push_writer)
            if self.session is not None:
                self.server.close_session(self.session)
            close_writer(self.writer)

    async def _open(self) -> bool:
        try:
            body = await asyncio.wait_for(wire.receive(self.reader), OPEN_TIMEOUT_SECONDS)
            self.server.stats.bytes_down += len(body) + wire.HEADER_LEN
            message = wire.decode(body)
            if not isinstance(message, dict) or message.get("op") not in ("open", "forward"):
                raise wire.WireError("the first message must open a session")
            self.session = self.server.open_session(self._parse_open(message), self.peer_id, self)
        except asyncio.TimeoutError:
            await self.send_error("no open message received in time")
            return False
        except (wire.WireError, SessionError) as e:
            await self.send_error(str(e), code=type(e).__name__)
            return False
        await self.send(wire.encode_json({"op": "opened", "position": 0, "dtype": self.server.dtype_name}))
        return True

    def _parse_open(self, message: dict) -> dict:
        def field(name: str, kind: type, optional: bool = False):
            value = message.get(name)
            if value is None and optional:
                return None
            if not isinstance(value, kind) or isinstance(value, bool):
                raise wire.WireError(f"open: {name!r} must be {kind.__name__}")
            return value

        session_id = field("session_id", str)
        if not 0 < len(session_id) <= MAX_SESSION_ID_LENGTH:
            raise wire.WireError("open: session_id must be 1-64 characters")
        return dict(
            session_id=session_id, model=field("model", str), start=field("start", int), end=field("end", int),
            max_length=field("max_length", int), next=_parse_next_hop(message.get("next")),
            prev_peer=field("prev_peer", str, optional=True),
            ephemeral=message["op"] == "forward",
        )

    async def _pump_client(self) -> None:
        """Read the client's stream into the inbox; a malformed frame is answered, not fatal."""
        try:
            while True:
                body = await wire.receive(self.reader)
                self.server.stats.bytes_down += len(body) + wire.HEADER_LEN
                try:
                    await self.inbox.put(wire.decode(body, hidden_size=self.server.hidden_size))
                except wire.WireError as e:
                    await self.send_error(str(e), code="WireError")
        except wire.WireError as e:  # an oversized frame: the stream cannot be resynchronised
            await self.send_error(str(e), code="WireError")
            await self.inbox.put(_CLOSED)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.inbox.put(_CLOSED)

    async def _run_session(self) -> None:
        session = self.session
        while True:
            try:
                item = await asyncio.wait_for(self.inbox.get(), self.server.config.session_idle_timeout_seconds)
            except asyncio.TimeoutError:
                await self.send_error("session closed after being idle too long", code="IdleTimeout")
                return
            if item is _CLOSED:
                return
            if isinstance(item, wire.Step):
                await self._step(session, item)
            elif isinstance(item, dict):
                op = item["op"]
                if op == "close":
                    return
                if op == "history":
                    await self._send_history(session, item)
                elif op in ("set_next", "set_prev"):
                    await self._relink(session, item)
                else:
                    await self.send_error(f"unknown op {op!r}", code="WireError")
            else:
                await self.send_error("acknowledgements are not accepted here", code="WireError")
            if self.server.draining and not session.ephemeral:
                await self.send(wire.encode_json({"op": "drain", "reason": "drain", "message": "this server is draining"}))

    async def _step(self, session: ServerSession, step: wire.Step) -> None:
        try:
            output = await self.server.compute(session, step.position, step.hidden)
        except SessionError as e:
            await self.send_error(str(e), code="SessionError", step_id=step.step_id)
            return
        self.server.stats.tokens_served += step.n_tokens
        result = wire.Step(step.step_id, step.position, output)
        if step.flags & wire.FLAG_NO_FORWARD or session.next_hop is None:
            if step.flags & wire.FLAG_NO_FORWARD:
                await self.send(wire.encode_ack(wire.Ack(step.step_id, step.position, step.n_tokens)))
            else:
                await self.send(wire.encode_step(result))
            return
        try:
            await self._push(session, result)
        except (PeerUnreachableError, ConnectionError, asyncio.TimeoutError, RuntimeError) as e:
            await self.send_error(f"could not push to the next server: {e}", code="PushFailed",
                                  step_id=step.step_id, blame=session.next_hop.peer_id)
            close_writer(self.push_writer)
            self.push_writer = None
            return
        await self.send(wire.encode_ack(wire.Ack(step.step_id, step.position, step.n_tokens)))

    async def _push(self, session: ServerSession, result: wire.Step) -> None:
        timeout = self.server.config.push_timeout_seconds
        if self.push_writer is None:
            hop = session.next_hop
            _, self.push_writer = await open_stream(self.server.p2p, hop.peer_id, PUSH_PROTOCOL, hop.addrs, timeout)
            await asyncio.wait_for(wire.send(self.push_writer, wire.encode_json({"op": "push", "session_id": hop.session_id})), timeout)
        sent = await asyncio.wait_for(wire.send(self.push_writer, wire.encode_step(result)), timeout)
        self.server.stats.bytes_up += sent

    async def _relink(self, session: ServerSession, message: dict) -> None:
        """After a fail-over the client links this session to a replacement neighbour."""
        try:
            if message["op"] == "set_prev":
                prev_peer = message.get("prev_peer")
                if not isinstance(prev_peer, str):
                    raise wire.WireError("set_prev: 'prev_peer' must be a peer id")
                session.prev_peer = prev_peer
            else:
                session.next_hop = _parse_next_hop(message.get("next"))
                close_writer(self.push_writer)  # the next push opens a stream to the new neighbour
                self.push_writer = None
        except wire.WireError as e:
            await self.send_error(str(e), code="WireError")
            return
        await self.send(wire.encode_json({"op": "relinked"}))

    async def _send_history(self, session: ServerSession, message: dict) -> None:
        upto, request_id = message.get("upto"), message.get("id", 0)
        if not isinstance(upto, int) or isinstance(upto, bool) or upto < 0:
            await self.send_error("history: 'upto' must be a non-negative integer", code="WireError")
            return
        if not isinstance(request_id, int) or isinstance(request_id, bool) or not 0 <= request_id < 2**32:
            await self.send_error("history: 'id' must be an unsigned 32-bit integer", code="WireError")
            return
        try:
            history = session.history_upto(upto)
        except SessionError as e:
            await self.send_error(str(e), code="SessionError")
            return
        chunk = wire.max_chunk_tokens(history.shape[2], history.dtype)
        for start in range(0, history.shape[1], chunk):
            await self.send(wire.encode_step(wire.Step(request_id, start, history[:, start : start + chunk])))
        await self.send(wire.encode_json({"op": "history_end", "upto": upto, "id": request_id}))


def _parse_next_hop(value) -> NextHop | None:
    """The 'next' field of an open or set_next message: where this session pushes its outputs (None: to the client)."""
    if value is None:
        return None
    if not (isinstance(value, dict) and isinstance(value.get("peer_id"), str) and isinstance(value.get("session_id"), str)):
        raise wire.WireError("open: 'next' must name peer_id and session_id")
    addrs = value.get("addrs", [])
    if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs) or len(addrs) > 16:
        raise wire.WireError("open: 'next.addrs' must be a list of multiaddrs")
    return NextHop(value["peer_id"], value["session_id"], tuple(addrs))


async def serve_push(server: "BlockServer", peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A previous server pushes one session's outputs here; they join that session's inbox."""
    try:
        body = await asyncio.wait_for(wire.receive(reader), OPEN_TIMEOUT_SECONDS)
        message = wire.decode(body)
        handler = server.handler_for_push(message.get("session_id") if isinstance(message, dict) else None, peer_id)
        if handler is None:
            server.stats.refused += 1
            await wire.send(writer, wire.encode_json({"op": "error", "message": "no such session for this pusher", "code": "SessionError"}))
            return
        while True:
            body = await wire.receive(reader)
            server.stats.bytes_down += len(body) + wire.HEADER_LEN
            try:
                item = wire.decode(body, hidden_size=server.hidden_size)
            except wire.WireError as e:
                await handler.send_error(f"a bad push from the previous server: {e}", code="WireError", blame=peer_id)
                continue
            if isinstance(item, wire.Step):
                await handler.inbox.put(item)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, wire.WireError):
        pass
    finally:
        close_writer(writer)


async def serve_ping(server: "BlockServer", peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer pings on one stream until it closes: the caller measures round trips and reads our record."""
    try:
        while True:
            body = await asyncio.wait_for(wire.receive(reader), 60.0)
            message = wire.decode(body)
            if not isinstance(message, dict) or message.get("op") != "ping":
                raise wire.WireError("expected a ping")
            stats = dataclasses.asdict(server.stats)  # byte and token counters, for benchmarks and status
            await wire.send(writer, wire.encode_json({"op": "pong", "time": time.time(), "record": server.record().to_wire(),
                                                      "stats": stats}))
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, wire.WireError):
        pass
    finally:
        close_writer(writer)
