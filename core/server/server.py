"""The block server: hosts blocks [start, end) of one model, serves inference sessions, announces itself.

Lifecycle: `await BlockServer.create(...)` registers the stream handlers and announces JOINING then ONLINE;
`await server.drain()` stops accepting sessions and waits for live ones to end or move (`resume()` takes new
ones again); `await server.shutdown()` announces OFFLINE, closes everything and lets go of the weights.

The server owns its range and its state: `change_range` is the one way to host other blocks (policies such as
runtime resize and rebalancing call it, core/server/resize.py and rebalance.py), and it tells the sessions that
lose blocks to move. Nothing here starts work in a constructor.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field

import hivemind
import torch

from potluck.core import __version__
from potluck.core.model.families import BlockStack
from potluck.core.model.loading import ModelSpec, dtype_name
from potluck.core.server.batching import StepBatcher, make_batchable
from potluck.core.server.handlers import SessionHandler, serve_ping, serve_push
from potluck.core.server.sessions import CacheBudget, ServerSession, SessionError
from potluck.core.swarm import dht as swarm_dht
from potluck.core.swarm.records import ServerRecord, ServerState
from potluck.core.swarm.streams import PING_PROTOCOL, PUSH_PROTOCOL, SESSION_PROTOCOL
from potluck.core.wire import control, framing
from potluck.core.wire.control import DrainReason, ErrorCode

log = logging.getLogger(__name__)

INLINE_COMPUTE_TOKEN_BLOCKS = 64  # steps smaller than this (tokens x blocks) run on the event loop: no thread hop
REFUSE_DRAIN_SECONDS = 1.0  # how long a refused stream waits for its caller to finish sending
STREAM_END_SECONDS = 2.0  # a stream of a peer no longer admitted is closed; its handler is cancelled if still running


@dataclass(frozen=True)
class ServerConfig:
    name: str = ""  # shown to friends: "Ana's mini PC"
    cache_tokens: int = 8192  # attention-cache budget, tokens per block, all sessions together
    max_session_tokens: int = 4096  # the longest session one client may open
    session_idle_timeout_seconds: float = 300.0  # a session with no message for this long is closed
    push_timeout_seconds: float = 5.0  # giving up on the next server after this long
    send_timeout_seconds: float = 20.0  # a peer that reads nothing we send for this long loses its stream
    member_recheck_seconds: float = 1.0  # open streams of peers no longer admitted end within this (plus the
    # member list's own refresh, core/swarm/secure.MemberCheck)
    announce_period_seconds: float = swarm_dht.DEFAULT_ANNOUNCE_PERIOD_SECONDS
    record_ttl_seconds: float = swarm_dht.DEFAULT_RECORD_TTL_SECONDS
    drain_timeout_seconds: float = 30.0  # the longest a drain waits for live sessions
    batching: bool = True  # run concurrent sessions' decode steps together (core/server/batching.py)


@dataclass
class ServerStats:
    started_at: float = field(default_factory=time.time)
    tokens_served: int = 0
    tokens_for_others: int = 0  # of tokens_served, in sessions another peer opened (not this PC's own chats)
    sessions_served: int = 0
    refused: int = 0  # messages or sessions refused
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(frozen=True)
class RangeChange:
    """One change of the hosted range, for stats, logs and tests."""

    old: tuple[int, int]
    new: tuple[int, int]
    time: float

    @property
    def kind(self) -> str:
        """"shrink", "grow" or "move"."""
        (old_start, old_end), (start, end) = self.old, self.new
        if old_start <= start and end <= old_end:
            return "shrink"
        if start <= old_start and old_end <= end:
            return "grow"
        return "move"


class BlockServer:
    def __init__(self, spec: ModelSpec, stack: BlockStack, dht: hivemind.DHT, p2p, config: ServerConfig, admit=None):
        self.spec, self.stack, self.dht, self.p2p, self.config = spec, stack, dht, p2p, config
        self.admit = admit or (lambda peer_id: True)  # who may call us (membership check, see core/swarm)
        self.peer_id = dht.peer_id.to_base58()
        self.addrs = tuple(swarm_dht.visible_maddrs(dht))[:16]  # asked once: a blocking call into the DHT process
        self.hidden_size = spec.hidden_size
        self.dtype_name = dtype_name(next(stack.parameters()).dtype)  # what hidden states are computed in
        self.compute_name = stack.compute or self.dtype_name  # what the record announces ("float32+int4")
        self.budget = CacheBudget(config.cache_tokens)
        self.stats = ServerStats()
        self.state = ServerState.JOINING
        self.throughput_tokens_per_second = 0.0
        self.range_changes: list[RangeChange] = []
        self._handlers: dict[str, SessionHandler] = {}
        self._tasks: set[asyncio.Task] = set()
        self._streams: dict[asyncio.Task, tuple[str, object]] = {}  # open stream -> (peer, writer): member re-check
        self._background: list[asyncio.Task] = []
        self._last_expiration = 0.0
        self._announced_blocks = (stack.start, stack.end)  # every block we ever announced (shed ones included)
        self._compute_lock = asyncio.Lock()
        make_batchable(stack)  # decode steps of concurrent sessions share each linear layer's read of the weights
        self.batcher = StepBatcher(open_sessions=lambda: len(self._handlers))

    @classmethod
    async def create(cls, spec: ModelSpec, stack: BlockStack, dht: hivemind.DHT, config: ServerConfig,
                     admit=None) -> "BlockServer":
        """Announce, measure, register handlers, go ONLINE, and keep announcing every period."""
        p2p = await dht.replicate_p2p()
        self = cls(spec, stack, dht, p2p, config, admit)
        await self.announce()
        self.throughput_tokens_per_second = await asyncio.to_thread(measure_throughput, stack)
        with swarm_dht.private_umask():  # p2pd's handler sockets: no other local user may hand us streams
            for protocol in (SESSION_PROTOCOL, PUSH_PROTOCOL, PING_PROTOCOL):
                await p2p.add_binary_stream_handler(protocol, self.stream_handler(protocol))
        self.state = ServerState.ONLINE
        await self.announce()
        self.run_in_background(self._announce_forever())
        self.run_in_background(self._recheck_members_forever())
        return self

    def run_in_background(self, coro) -> asyncio.Task:
        """Run `coro` (a policy loop) for as long as the server runs; shutdown cancels it."""
        task = asyncio.create_task(coro)
        self._background.append(task)
        return task

    def stream_handler(self, protocol: str):
        """The admission-checked handler for `protocol` (what p2pd calls), or None. The node also calls it for
        streams from its own client to its own server, which libp2p cannot dial."""
        by_protocol = {SESSION_PROTOCOL: self._on_session, PUSH_PROTOCOL: self._on_push, PING_PROTOCOL: self._on_ping}
        return self._guard(by_protocol[protocol]) if protocol in by_protocol else None

    # ---- who may talk to us -------------------------------------------------------------------------------
    def _guard(self, handler):
        async def guarded(stream_info, reader, writer):
            peer_id = stream_info.peer_id.to_base58()
            if not self.admit(peer_id):
                self.stats.refused += 1
                await _refuse(reader, writer, "you are not a member of this swarm")
                return
            task = asyncio.current_task()
            self._tasks.add(task)
            self._streams[task] = (peer_id, writer)
            try:
                await handler(peer_id, reader, writer)
            except Exception:  # a handler bug must not take the server down
                log.exception("handler for %s failed", peer_id[-8:])
            finally:
                self._tasks.discard(task)
                self._streams.pop(task, None)

        return guarded

    def recheck_members(self) -> int:
        """End every open stream (sessions, pushes, pings) of a peer that is no longer admitted, and drop pushes
        to one; returns how many streams ended. The member list can change while streams stay open for hours."""
        refused = {peer for peer, _ in list(self._streams.values()) if not self.admit(peer)}
        for handler in list(self._handlers.values()):
            if handler.peer_id in refused:
                handler.end_now("you are no longer a member of this swarm", ErrorCode.NOT_A_MEMBER)
            hop = handler.session.next_hop if handler.session is not None else None
            if hop is not None and handler.push_writer is not None and not self.admit(hop.peer_id):
                handler.drop_push()
        ended = [(task, writer) for task, (peer, writer) in list(self._streams.items()) if peer in refused]
        for task, writer in ended:
            self._streams.pop(task, None)
            writer.close()  # its reads fail at once and the handler ends as when a peer hangs up
            asyncio.get_running_loop().call_later(STREAM_END_SECONDS, task.cancel)  # one stuck elsewhere
        if ended:
            log.warning("ended %d stream(s) of peers no longer in the swarm", len(ended))
        return len(ended)

    async def _recheck_members_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.member_recheck_seconds)
            try:
                self.recheck_members()
            except Exception:  # a bug here must not stop the checks for good
                log.exception("member re-check failed")

    async def announced_addrs(self, peer_id: str, block: int) -> tuple[str, ...] | None:
        """The addresses `peer_id` announces in its own record for `block`, or None if it announces none there (in a
        private swarm only members' records are read). Pushes go only there, never where a client says."""
        records = await swarm_dht.fetch_records(self.dht, self.spec.uid, [block])
        return next((tuple(r.addrs) for r in records.get(block, ()) if r.peer_id == peer_id), None)

    async def _on_session(self, peer_id, reader, writer):
        await SessionHandler(self, peer_id, reader, writer).serve()

    async def _on_push(self, peer_id, reader, writer):
        await serve_push(self, peer_id, reader, writer)

    async def _on_ping(self, peer_id, reader, writer):
        await serve_ping(self, peer_id, reader, writer)

    # ---- sessions ---------------------------------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        return self.state is ServerState.DRAINING

    def open_session(self, request: control.Open, client_peer: str, handler: SessionHandler) -> ServerSession:
        if self.state is not ServerState.ONLINE:
            raise SessionError(f"this server is {self.state.value} and accepts no new sessions")
        if request.model != self.spec.uid:
            raise SessionError(f"this server hosts {self.spec.uid}, not {request.model}")
        if not self.stack.start <= request.start < request.end <= self.stack.end:
            raise SessionError(f"blocks {request.start}:{request.end} are not all hosted here "
                               f"({self.stack.start}:{self.stack.end})")
        if request.max_length > self.config.max_session_tokens:
            raise SessionError(f"max_length must be between 1 and {self.config.max_session_tokens}")
        if request.session_id in self._handlers:
            raise SessionError(f"session {request.session_id} is already open")
        if request.next is not None and not self.admit(request.next.peer_id):
            raise SessionError("the next server named is not a member of this swarm")
        self.budget.reserve(request.session_id, request.max_length)
        session = ServerSession(
            request.session_id, client_peer, self.stack.subrange(request.start, request.end), request.max_length,
            next_hop=request.next, prev_peer=request.prev_peer,
        )
        self._handlers[request.session_id] = handler
        self.stats.sessions_served += 1
        return session

    def close_session(self, session: ServerSession) -> None:
        self._handlers.pop(session.session_id, None)
        self.budget.release(session.session_id)

    def handler_for_push(self, session_id: str, pusher: str) -> SessionHandler | None:
        handler = self._handlers.get(session_id)
        if handler is None or handler.session is None or handler.session.prev_peer != pusher:
            return None
        return handler

    @property
    def active_sessions(self) -> int:
        return len(self._handlers)

    async def compute(self, session: ServerSession, position: int, hidden: torch.Tensor) -> torch.Tensor:
        """Run one step of a session. Single-token steps go through the batcher (core/server/batching.py): alone
        they run right here, together they share the weights' reads. Longer steps (prefill chunks, speculative
        checks) run beside them, the big ones on a worker thread one at a time, so they never freeze the others."""
        run = functools.partial(session.run_step, position, hidden)
        if hidden.shape[1] == 1 and self.config.batching:
            return await self.batcher.run(run, (session.stack.start, session.stack.end))
        if hidden.shape[1] * (session.stack.end - session.stack.start) <= INLINE_COMPUTE_TOKEN_BLOCKS:
            return run()
        async with self._compute_lock:  # one big chunk at a time: they share the same cores
            return await asyncio.to_thread(run)

    # ---- the hosted range ----------------------------------------------------------------------------------------
    async def change_range(self, stack: BlockStack, reason: DrainReason = DrainReason.MOVING) -> None:
        """Host `stack` from now on: announce it (new routes follow at once), then ask every session that used
        blocks outside it to move, for `reason`. Sessions keep their own views of the old blocks until they leave."""
        old = (self.stack.start, self.stack.end)
        make_batchable(stack)
        self.stack = stack
        await self.announce()
        words = f"this server now hosts blocks {stack.start}:{stack.end}"
        for handler in list(self._handlers.values()):
            session = handler.session
            if session is not None and not (stack.start <= session.stack.start and session.stack.end <= stack.end):
                await handler.tell_drain(reason, words)
        self.range_changes.append(RangeChange(old, (stack.start, stack.end), time.time()))
        log.warning("now hosting blocks %s:%s (was %s:%s)", stack.start, stack.end, *old)

    # ---- announcements ----------------------------------------------------------------------------------------
    def record(self) -> ServerRecord:
        return ServerRecord(
            peer_id=self.peer_id, start_block=self.stack.start, end_block=self.stack.end, state=self.state,
            name=self.config.name[:64], throughput_tokens_per_second=round(self.throughput_tokens_per_second, 3),
            cache_tokens_left=self.budget.left_tokens, addrs=self.addrs,
            version=__version__, compute=self.compute_name,
        )

    def record_json(self) -> dict:
        return self.record().to_wire()

    async def announce(self) -> bool:
        if not self.dht.is_alive():  # e.g. a SIGTERM to our whole process group reached the DHT process first
            return False
        expiration = max(swarm_dht.now() + self.config.record_ttl_seconds, self._last_expiration + 0.001)
        self._last_expiration = expiration
        record = self.record()
        low, high = min(self._announced_blocks[0], record.start_block), max(self._announced_blocks[1], record.end_block)
        self._announced_blocks = (low, high)
        # blocks we shed get our new record too: it does not host them, so routes drop us there at once
        return await swarm_dht.store_records(self.dht, self.spec.uid, record, expiration, self.spec.num_blocks,
                                             blocks=range(low, high))

    async def _announce_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.announce_period_seconds)
            try:
                await swarm_dht.rejoin(self.dht, [str(m) for m in self.dht.initial_peers or ()])  # heals a cut-off peer
                await self.announce()
            except Exception as e:  # the DHT may be briefly unreachable; the next period retries
                log.warning("announcement failed: %s", e)

    # ---- leaving ----------------------------------------------------------------------------------------------
    async def drain(self) -> None:
        """Accept no new sessions, tell clients to move, and wait (bounded) until live sessions are gone."""
        if self.state is ServerState.ONLINE:
            self.state = ServerState.DRAINING
            try:
                await asyncio.wait_for(self.announce(), 5.0)
            except Exception as e:  # the DHT may be gone already; draining goes on
                log.warning("could not announce draining: %s", e)
            for handler in list(self._handlers.values()):
                await handler.tell_drain(DrainReason.LEAVING, "this server is draining")
        deadline = time.monotonic() + self.config.drain_timeout_seconds
        while self._handlers and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def resume(self) -> None:
        """Take new sessions again after a drain (the owner resumed before the pause finished)."""
        if self.state is ServerState.DRAINING:
            self.state = ServerState.ONLINE
            await self.announce()

    async def shutdown(self) -> None:
        """Announce OFFLINE, remove the handlers, end the sessions, and let go of the weights."""
        for task in self._background:
            task.cancel()
        self.state = ServerState.OFFLINE
        try:
            await asyncio.wait_for(self.announce(), 5.0)
        except Exception as e:
            log.warning("could not announce going offline: %s", e)
        for name in (SESSION_PROTOCOL, PUSH_PROTOCOL, PING_PROTOCOL):
            try:
                await self.p2p.remove_binary_stream_handler(name)
            except Exception:  # the daemon may already be gone
                pass
        for task in list(self._tasks):
            task.cancel()
        self.batcher.shutdown()
        self.stack = None  # whatever still points at this server must not keep the weights alive


async def _refuse(reader, writer, message: str) -> None:
    """Answer and close. What the caller already sent is read (bounded) first: closing with unread bytes made
    p2pd reset the stream, and 16 of 200 refusals never reached the caller."""
    try:
        body = control.encode(control.ErrorReply(message, ErrorCode.NOT_A_MEMBER))
        await asyncio.wait_for(framing.send(writer, body), REFUSE_DRAIN_SECONDS)
        await asyncio.wait_for(_discard(reader, 1 << 20), REFUSE_DRAIN_SECONDS)
    except (ConnectionError, RuntimeError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


async def _discard(reader, limit_bytes: int) -> None:
    while limit_bytes > 0:
        chunk = await reader.read(min(65536, limit_bytes))
        if not chunk:
            return
        limit_bytes -= len(chunk)


def measure_throughput(stack: BlockStack, steps: int = 8) -> float:
    """Single-token decode speed of one block, tokens per second (what a hop through this server costs)."""
    one = stack.subrange(stack.start, stack.start + 1)
    param = next(one.parameters())
    hidden = torch.randn(1, 1, stack.config.hidden_size, dtype=param.dtype, device=param.device)
    cache = one.new_cache()
    with torch.inference_mode():
        one(hidden, cache)  # warm-up
        began = time.perf_counter()
        for _ in range(steps):
            one(hidden, cache)
        elapsed = time.perf_counter() - began
    return steps / max(elapsed, 1e-9)
