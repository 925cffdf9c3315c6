"""The node's control loop: commands from the GUI in, lifecycle and events out (core.protocol over stdio).

One asyncio loop on the main thread owns everything that talks to the swarm: the DHT (core.node.network), the
BlockServer of the current serving period (core.node.serving) and the stats ticker. Around it:

- a stdin reader thread hands each command line to the loop (it never blocks the loop);
- lifecycle commands (start/resume, pause, drain) run one at a time, in order, on a worker task; `pause` and
  `shutdown` cancel a start still in progress;
- `generate` runs on a chat worker thread (core.node.chat) and streams events from there;
- a parent watch thread, a closed stdin, a closed stdout, SIGTERM and `shutdown` all end in `_shutdown`, which
  drains (bounded), announces offline and returns; a timer makes sure the process is gone soon after anyway.

States: stopped → starting → serving ⇄ draining → paused → starting …; any → failed (stays up, `start`
retries); any → stopping → exit 0.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from potluck.core import paths, protocol
from potluck.core.client.suspects import read_suspects
from potluck.core.node import stats as node_stats
from potluck.core.node.api_service import ApiService
from potluck.core.node.chat import ChatService, ClientRecipe
from potluck.core.node.config import NodeConfig, apply_values, network_key, restart_needed
from potluck.core.node.loopback import LocalServer
from potluck.core.node.plan import NodeSetupError
from potluck.core.node.serving import memory_bytes, open_model_checked, resolve_device, serve_options, start_serving
from potluck.core.node.stdio import TOO_LONG, LogFile, ParentWatch, ProtocolWriter, StdinReader
from potluck.core.node.swarm_commands import SwarmCommands
from potluck.core.node.swarm_ops import check_model_path, check_same_model, make_network
from potluck.core.node.upkeep import Upkeep
from potluck.core.protocol import NodeState
from potluck.core.swarm.records import online_per_block

log = logging.getLogger(__name__)

STATS_PERIOD_SECONDS = 2.0  # a stats event this often (and on refresh)
SWARM_VIEW_PERIOD_SECONDS = 4.0  # the swarm's records are read from the DHT at most this often (unless refreshed)
SWARM_VIEW_TIMEOUT_SECONDS = 10.0
SHUTDOWN_DRAIN_SECONDS = 8.0  # on `shutdown`: the GUI terminates us 20 s after asking
QUICK_DRAIN_SECONDS = 2.0  # when the GUI is gone, or on SIGTERM (the GUI already waited)
HARD_EXIT_SECONDS = 18.0  # after shutdown begins, the process ends even if cleaning up hangs


@dataclass(frozen=True)
class _Exit:
    reason: str
    drain_seconds: float


class NodeController:
    def __init__(self, writer: ProtocolWriter, command_fd: int, log_file: LogFile | None = None, environ=os.environ):
        self.writer = writer
        self.log_file = log_file or LogFile()
        self._command_fd = command_fd
        self._environ = environ
        self.config = NodeConfig()
        self.state, self.detail = NodeState.STOPPED, ""
        self.network = None  # core.node.network.NodeNetwork, made on first need
        self.serving = None  # core.node.serving.Serving while blocks are loaded
        self.spec = None  # the opened model (core.model.loading.ModelSpec)
        self.device = "cpu"
        self.finished = node_stats.Contribution()  # totals of the serving periods that ended
        self._tokens_used = 0
        self._tokens_lock = threading.Lock()
        self._by_block = None  # the swarm's records for the model, as last read
        self._view_monotonic = float("-inf")
        self._last_coverage: tuple[int, ...] | None = None
        self._ops: collections.deque[str] = collections.deque()
        self._current_op: str | None = None
        self._current_task: asyncio.Task | None = None
        self._stopping = False
        self._drain_task: asyncio.Task | None = None
        self.chat = ChatService(self.send, self._client_recipe, on_token=self._count_token)
        self.api = ApiService(self.chat.client, lambda: self.network.model if self.network else self.config.model,
                              on_token=self._count_token, on_error=lambda m: self.send(protocol.Error(message=m)))
        self.swarm = SwarmCommands(self)  # the swarm page's commands (invite, revoke, leave, join, switch)
        self.upkeep = Upkeep(self)  # presence, history, serving rules (core/node/upkeep.py)

    # ------------------------------------------------------------------ events out

    def send(self, event: protocol.Event) -> None:
        self.writer.send(event)

    def set_state(self, state: NodeState, detail: str = "") -> None:
        if (state, detail) == (self.state, self.detail):
            return
        self.state, self.detail = state, detail
        log.info("state: %s%s", state.value, f" ({detail})" if detail else "")
        self.send(protocol.State(state=state, detail=detail))

    def _count_token(self) -> None:
        with self._tokens_lock:
            self._tokens_used += 1

    # ------------------------------------------------------------------ the loop

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._wake_ops = asyncio.Event()
        self._stats_now = asyncio.Event()
        gone = _Exit("standard input closed (the app is gone)", QUICK_DRAIN_SECONDS)
        self.writer.set_on_closed(lambda: self._from_thread(_Exit("the app stopped reading us", QUICK_DRAIN_SECONDS)))
        StdinReader(self._command_fd, lambda line: self._from_thread(gone if line is None else line)).start()
        ParentWatch(lambda reason: self._from_thread(_Exit(reason, QUICK_DRAIN_SECONDS)), self._environ).start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._loop.add_signal_handler(signum, self._inbox.put_nowait,
                                              _Exit(f"signal {signal.Signals(signum).name}", QUICK_DRAIN_SECONDS))
            except (NotImplementedError, RuntimeError):  # Windows
                pass
        background = [asyncio.create_task(self._tick_forever()), asyncio.create_task(self._lifecycle_worker())]
        exit_request = None
        while exit_request is None:
            item = await self._inbox.get()
            exit_request = item if isinstance(item, _Exit) else self._handle_line(item)
        await self._shutdown(exit_request, background)
        return 0

    def _from_thread(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)
        except RuntimeError:  # the loop has ended: we are exiting anyway
            pass

    def _handle_line(self, line: bytes) -> _Exit | None:
        if line is TOO_LONG:
            limit = protocol.MAX_LINE_CHARS
            self.send(protocol.Error(message=f"bad command: a line over {limit} characters was skipped"))
            return None
        try:
            cmd = protocol.decode_command(line)
        except protocol.ProtocolError as exc:
            self.send(protocol.Error(message=f"bad command: {exc}"))
            return None
        if isinstance(cmd, protocol.Shutdown):
            return _Exit("the app asked us to shut down", SHUTDOWN_DRAIN_SECONDS)
        if isinstance(cmd, protocol.SetConfig):
            self._apply_config(cmd.values)
        elif isinstance(cmd, (protocol.Start, protocol.Resume)):
            self.upkeep.owner_wants_serving = True
            self.enqueue("start")
        elif isinstance(cmd, protocol.Pause):
            self.upkeep.owner_wants_serving = False
            self.enqueue("pause")
        elif isinstance(cmd, protocol.Drain):
            self.enqueue("drain")
        elif isinstance(cmd, protocol.Refresh):
            self._view_monotonic = float("-inf")
            self._stats_now.set()
            self.upkeep.send_history()
        elif self.swarm.handle(cmd):
            pass
        elif isinstance(cmd, protocol.Generate):
            self.chat.submit(cmd)
        elif isinstance(cmd, protocol.Cancel) and not self.chat.cancel(cmd.request_id):
            log.info("cancel: no reply %r is running", cmd.request_id)
        return None

    def _apply_config(self, values: dict) -> None:
        applied = apply_values(self.config, values)
        if applied.unknown:
            log.info("set_config: ignoring settings this node does not know: %s", ", ".join(applied.unknown))
        if applied.problems:
            self.send(protocol.Error(message="set_config: " + "; ".join(applied.problems)))
        changed = restart_needed(self.config, applied.config)
        self.config = applied.config
        self._update_api()

        self.log_file.use_folder(Path(self.config.log_dir) if self.config.log_dir else paths.logs_dir())
        if changed and self.serving is not None:
            log.info("changed %s: takes effect when serving starts again", ", ".join(changed))

    # ------------------------------------------------------------------ lifecycle

    @property
    def busy(self) -> bool:
        """A lifecycle step runs or waits, or the node is stopping (rules then leave the state alone)."""
        return self._current_op is not None or bool(self._ops) or self._stopping

    async def stop_serving(self) -> None:
        """Drain (live sessions move to other servers), then unload the blocks; nothing when nothing is served."""
        if self.serving is not None:
            await self._drain_and_stop(None)

    async def join_swarm(self) -> None:
        """Join the swarm of the current settings without serving (the DHT and its services)."""
        await self._join_swarm(await self._network())

    def enqueue(self, op) -> None:
        """Run `op` after the steps already queued: "start", "pause", "drain", or a coroutine function."""
        if op == "pause" and self._current_op == "start" and self._current_task is not None:
            self._current_task.cancel()  # stop loading: the owner wants the memory back
        if self._ops and self._ops[-1] == op:
            return
        self._ops.append(op)
        self._wake_ops.set()

    async def _lifecycle_worker(self) -> None:
        while True:
            await self._wake_ops.wait()
            self._wake_ops.clear()
            while self._ops:
                op = self._ops.popleft()  # a name ("start", "pause", "drain") or a swarm command's coroutine function
                self._current_op = op if isinstance(op, str) else "swarm"
                self._current_task = asyncio.create_task(getattr(self, f"_op_{op}")() if isinstance(op, str) else op())
                await asyncio.wait({self._current_task})
                if not self._current_task.cancelled() and self._current_task.exception() is not None:
                    log.error("%s failed", self._current_op, exc_info=self._current_task.exception())
                self._current_op = self._current_task = None

    async def _op_start(self) -> None:
        if await self.upkeep.held_back():  # a serving rule says not now (paused, with its words)
            return
        if self.serving is not None:
            await self.serving.undrain()
            self.set_state(NodeState.SERVING, self._serving_words())
            return
        try:
            await self._start_serving()
        except asyncio.CancelledError:  # by pause or shutdown, which say where we are next
            log.info("start cancelled")
            raise
        except NodeSetupError as exc:
            self.set_state(NodeState.FAILED, str(exc))
        except Exception as exc:
            log.exception("could not start serving")
            self.set_state(NodeState.FAILED, f"Could not start serving: {exc}")

    async def _start_serving(self) -> None:
        config = self.config
        network = await self._network()
        if not network.model and config.mode == "join":  # no model in the settings: the swarm names it
            await self._join_swarm(network)
        self.set_state(NodeState.STARTING, "Opening the model")
        check_model_path(network, config)  # a friend's path from the invite, or a copy that moved: say where to fix it
        self.spec = await asyncio.to_thread(open_model_checked, network.model, network.revision)
        network.model_uid = self.spec.uid  # recorded when this PC creates the swarm from a local model
        self.device = await asyncio.to_thread(resolve_device, config.device)
        options = serve_options(config, network.model, self.device, network.quant)
        dht = await self._join_swarm(network)
        check_same_model(network, self.spec.uid)
        options = dataclasses.replace(options, dht=network.dht_options(), admit=network.admit,
                                      revision=network.revision)

        def progress(detail: str) -> None:
            self.set_state(NodeState.STARTING, detail)

        self.serving = await start_serving(self.spec, options, config, dht, progress, self.send)
        self._last_coverage = None  # a new period: judge the swarm afresh
        self.set_state(NodeState.SERVING, self._serving_words())
        self._view_monotonic = float("-inf")
        self._stats_now.set()

    async def _join_swarm(self, network):
        """The network's DHT (started on first use) and its services; failures in plain words."""
        if network.dht is None:
            self.set_state(NodeState.STARTING, "Joining the swarm")
        try:
            dht = await asyncio.to_thread(network.ensure)
        except RuntimeError as exc:
            raise NodeSetupError(f"Could not join the swarm: {exc}") from None
        await network.start_services()
        self._update_api()
        self._stats_now.set()  # the next tick tells the app which swarm this is
        return dht

    def _serving_words(self) -> str:
        s = self.serving
        return f"Serving {node_stats.span_words(s.start_block, s.end_block)} of {self.spec.num_blocks}"

    async def _op_pause(self) -> None:
        await self.stop_serving()
        self.set_state(NodeState.PAUSED, "Paused by you")

    async def _op_drain(self) -> None:
        if self.serving is None or self.serving.draining:
            self.send(protocol.State(state=self.state, detail=self.detail))  # nothing to do: say where we are
            return
        self.set_state(NodeState.DRAINING, self._draining_words())
        self._drain_task = asyncio.create_task(self.serving.drain())  # live sessions go on; `start` undoes it

    def _draining_words(self) -> str:
        active = self.serving.server.active_sessions if self.serving is not None else 0
        if not active:
            return "Taking no new conversations"
        return f"Finishing {active} conversation{'s' if active != 1 else ''}"

    async def _drain_and_stop(self, drain_seconds: float | None) -> None:
        """Drain (live sessions move to other servers), then unload the blocks and announce offline."""
        if not self._stopping:
            self.set_state(NodeState.DRAINING, self._draining_words())
        serving = self.serving
        try:
            await serving.drain(drain_seconds)
        finally:
            self.serving = None
            done = serving.contribution()
            self.finished = self.finished.plus(dataclasses.replace(
                done, start_block=0, end_block=0, active_sessions=0, block_tokens_per_second=0.0))
            await serving.stop()

    async def _network(self):
        """The node's network for the current settings (a new one if they changed while nothing was served)."""

        if self.network is not None and network_key(self.network.config) != network_key(self.config) \
                and self.serving is None:
            old, self.network = self.network, None
            await old.close()
        if self.network is None:
            self.network = make_network(self.config, self._environ)
        elif network_key(self.network.config) == network_key(self.config):
            self.network.config = self.config  # the same swarm; the model or this PC's name may have changed
        return self.network

    # ------------------------------------------------------------------ chat

    def _client_recipe(self) -> ClientRecipe:
        """Runs on a chat thread: the network comes from the loop; starting its DHT may block this thread."""
        network = asyncio.run_coroutine_threadsafe(self._network(), self._loop).result(30)
        try:
            dht = network.ensure()
        except RuntimeError as exc:
            raise RuntimeError(f"could not join the swarm: {exc}") from None
        if not network.model:
            raise RuntimeError("no model is set yet")
        return ClientRecipe(model=network.model, swarm_key=repr(network_key(network.config)),
                            self_peer_id=network.peer_id, dht=dht, local=self._local_server)

    def _local_server(self):
        """This PC's serving server for the chat's local streams (called from the chat client's loop)."""

        serving = self.serving
        server = serving.server if serving is not None else None
        if server is None:
            return None
        return LocalServer(peer_id=server.peer_id, handler_for=server.stream_handler, loop=self._loop)

    def _update_api(self) -> None:
        """The API endpoints for the settings and the swarm joined (core/node/api_service.py)."""
        swarm = getattr(self.network, "swarm", None)  # a private swarm's SwarmNode, once joined
        self.api.update(enabled=self.config.api_enabled, port=self.config.api_port,
                        swarm_id=getattr(swarm, "swarm_id", None))

    # ------------------------------------------------------------------ stats

    async def _tick_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stats_now.wait(), STATS_PERIOD_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._stats_now.clear()
            try:
                await self._refresh_view()
                await self.upkeep.before_stats()
                stats = self._stats()
                self.send(stats)
                await self.swarm.tick(stats)
                await self.upkeep.after_stats(stats)
            except asyncio.CancelledError:
                raise
            except Exception:  # a stats hiccup must not end the node
                log.warning("could not gather stats", exc_info=True)

    async def _refresh_view(self) -> None:
        network, spec = self.network, self.spec
        if spec is None or network is None or network.dht is None:
            return
        if time.monotonic() - self._view_monotonic < SWARM_VIEW_PERIOD_SECONDS:
            return
        from potluck.core.swarm.dht import fetch_records

        self._view_monotonic = time.monotonic()
        try:
            self._by_block = await asyncio.wait_for(fetch_records(network.dht, spec.uid, range(spec.num_blocks)),
                                                    SWARM_VIEW_TIMEOUT_SECONDS)
        except (asyncio.TimeoutError, RuntimeError, OSError) as exc:
            log.info("could not read the swarm's records: %s", exc)
            return
        if self.state in (NodeState.SERVING, NodeState.DRAINING, NodeState.PAUSED):  # not while our own blocks load
            current = online_per_block(spec.num_blocks, self._by_block)
            for alert in node_stats.coverage_alerts(self._last_coverage, current):
                self.send(alert)
            self._last_coverage = current

    def _stats(self) -> protocol.Stats:

        contribution = self.finished.plus(self.serving.contribution()) if self.serving is not None else \
            dataclasses.replace(self.finished, start_block=0, end_block=0)
        peer_id = self.network.peer_id if self.network is not None else ""
        me = node_stats.Me(peer_id=peer_id, name=self.config.pc_name, state=self.state,
                           start_block=contribution.start_block, end_block=contribution.end_block) if peer_id else None
        used, free = memory_bytes(self.device) if self.spec is not None else (0, 0)
        with self._tokens_lock:
            tokens_used = self._tokens_used
        stats = node_stats.build_stats(contribution, total_blocks=self.spec.num_blocks if self.spec is not None else 0,
                                       memory_used_bytes=used, memory_free_bytes=free, tokens_used=tokens_used,
                                       by_block=self._by_block, me=me, suspects=frozenset(read_suspects()),
                                       **self.upkeep.stats_inputs(contribution))
        return dataclasses.replace(stats, api_url=self.api.url)

    # ------------------------------------------------------------------ the end

    async def _shutdown(self, request: _Exit, background: list[asyncio.Task]) -> None:
        timer = threading.Timer(HARD_EXIT_SECONDS, _hard_exit)
        timer.daemon = True
        timer.start()
        log.info("shutting down: %s", request.reason)
        self.set_state(NodeState.STOPPING, "Shutting down")
        self._stopping = True
        self._ops.clear()
        if self._current_task is not None and self._current_op == "start":
            self._current_task.cancel()
        for task in background:
            task.cancel()
        await asyncio.wait([*background, *([self._current_task] if self._current_task else [])], timeout=5)
        self.chat.cancel_all()
        if self.serving is not None:
            try:
                await self._drain_and_stop(request.drain_seconds)
            except Exception:
                log.exception("leaving the swarm cleanly failed")
        await asyncio.to_thread(self.api.close)  # its replies run on the chat client
        await asyncio.to_thread(self.chat.close, 2.0)
        await self.upkeep.leave()  # friends see this PC leave now, not when its presence expires
        if self.network is not None:
            try:
                await asyncio.wait_for(self.network.close(), 5)
            except Exception:
                log.exception("closing the swarm connection failed")
        log.info("stopped")


def _hard_exit() -> None:
    log.error("cleaning up took over %.0f s; exiting anyway", HARD_EXIT_SECONDS)
    logging.shutdown()
    os._exit(0)
