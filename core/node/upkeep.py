"""What the node does every stats period besides the stats themselves: presence, history, the steady rate, and
the serving rules. Kept out of core/node/control.py, which calls it at three points:

- `before_stats()`: renew this node's presence in the swarm and read everyone's (core/node/presence.py);
- `stats_inputs(contribution)`: the extra inputs of `core.node.stats.build_stats` (presence, members seen before,
  tokens per second over the last minute, what the blocks hold, this month's upload);
- `after_stats(stats)`: note the counters in the history (core/node/history.py), remember who was seen, send the
  `history` event now and then, and apply the serving rules (core/node/rules.py): when a rule says no, the node
  drains and stops serving like a pause (state `paused`, the rule's words as detail); when the rules allow serving
  again and the owner wants it, it starts again. The owner's own Pause always wins; `held_back()` keeps a `start`
  from loading blocks a rule forbids.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Callable

from potluck.core import paths, protocol
from potluck.core.node import history as node_history
from potluck.core.node import rules as node_rules
from potluck.core.node.machine import IdleProbe, on_battery
from potluck.core.node.stats import Contribution, Presence, RateWindow
from potluck.core.protocol import NodeState

log = logging.getLogger(__name__)

HISTORY_EVENT_SECONDS = 60.0  # a `history` event this often (and on the first tick)
RULES_FILE = "rules.json"  # in the config folder: the rules of a PC without the app


class Upkeep:
    def __init__(self, ctl, store_factory: Callable[[], node_history.HistoryStore] = node_history.HistoryStore,
                 idle: IdleProbe | None = None, battery: Callable[[], bool | None] = on_battery,
                 clock: Callable[[], dt.datetime] = dt.datetime.now, monotonic: Callable[[], float] = time.monotonic):
        self.ctl = ctl
        self._store_factory, self._idle, self._battery = store_factory, idle or IdleProbe(), battery
        self._clock, self._monotonic = clock, monotonic
        self._store: node_history.HistoryStore | None = None
        self._store_failed = False
        self._recorder: node_history.Recorder | None = None
        self._rate = RateWindow()
        self._presence: list[Presence] = []
        self._presence_at = float("-inf")
        self._presence_read_at = float("-inf")
        self._presence_state = ""  # the node state last announced
        self._history_at = float("-inf")
        self._file_rules: node_rules.ServingRules | None = None
        self._blocks_bytes: tuple[tuple, int] = ((), 0)  # (which stack was measured, its bytes)
        self._chat_parts: tuple[object, int] = (None, 0)  # (the chat client's parts measured, their bytes)
        self._threads_default: int | None = None
        self.owner_wants_serving = True  # the owner's wish (start/resume vs pause); rules never override a pause
        self.rule: node_rules.Decision | None = None  # the rule that holds serving back now, if any

    # ------------------------------------------------------------------ the store

    def store(self) -> node_history.HistoryStore | None:
        if self._store is None and not self._store_failed:
            try:
                self._store = self._store_factory()
                self._recorder = node_history.Recorder(self._store)
            except Exception as exc:  # a read-only disk must not stop the node
                self._store_failed = True
                log.warning("no history: cannot open %s: %s", node_history.history_path(), exc)
        return self._store

    async def leave(self) -> None:
        """Shutting down: say so in the swarm (friends list this PC offline at once), write the history, close."""
        dht = getattr(self.ctl.network, "dht", None)
        if dht is not None and self._presence_state:
            from potluck.core.node import presence

            try:
                await asyncio.wait_for(presence.announce(dht, self.ctl.network.peer_id, self.ctl.config.pc_name,
                                                         "stopping"), 3)
            except Exception as exc:  # leaving anyway
                log.info("could not say goodbye in the swarm: %s", exc)
        self.close()

    def close(self) -> None:
        if self._recorder is not None:
            try:
                self._recorder.flush()
            except Exception:
                log.warning("could not write the last history", exc_info=True)
        if self._store is not None:
            self._store.close()
        self._idle.close()

    # ------------------------------------------------------------------ presence

    async def before_stats(self) -> None:
        """Renew this node's presence every PRESENCE_PERIOD_SECONDS (and at once when its state changed); read
        everyone's every PRESENCE_READ_SECONDS, so a friend who leaves is offline here within seconds."""
        network = self.ctl.network
        dht = getattr(network, "dht", None)
        if dht is None:
            return
        from potluck.core.node import presence

        now = self._monotonic()
        try:
            if self.ctl.state.value != self._presence_state or now - self._presence_at >= presence.PRESENCE_PERIOD_SECONDS:
                self._presence_at, self._presence_state = now, self.ctl.state.value
                await asyncio.wait_for(presence.announce(dht, network.peer_id, self.ctl.config.pc_name,
                                                         self.ctl.state.value), 10)
            if now - self._presence_read_at >= presence.PRESENCE_READ_SECONDS:
                self._presence_read_at = now
                self._presence = await asyncio.wait_for(presence.fetch(dht), 10)
        except (asyncio.TimeoutError, RuntimeError, OSError) as exc:
            log.info("could not renew presence: %s", exc)

    def swarm_key(self) -> str:
        swarm = getattr(self.ctl.network, "swarm", None)
        swarm_id = getattr(swarm, "swarm_id", "")
        return swarm_id or f"open:{getattr(self.ctl.network, 'model', '')}"

    def remembered(self) -> dict[str, tuple[str, float]]:
        """Members seen before (from the history file), and in a private swarm every active member of its list."""
        store = self.store()
        seen = store.members(self.swarm_key()) if store is not None else {}
        membership = self.ctl.swarm.membership
        if membership is None:
            return seen
        out = {}
        for entry in membership.members:
            if not getattr(entry, "revoked", False):
                name, when = seen.get(entry.peer_id, ("", 0.0))
                out[entry.peer_id] = (getattr(entry, "name", "") or name, when)
        return out

    # ------------------------------------------------------------------ stats

    def stats_inputs(self, contribution: Contribution) -> dict:
        now = self._clock()
        return dict(presence=tuple(self._presence), remembered=self.remembered(), now=time.time(),
                    served_tokens_per_second=self._rate.add(self._monotonic(), contribution.tokens_served),
                    memory_blocks_bytes=self._stack_bytes(), memory_chat_bytes=self._chat_bytes(),
                    month_bytes_up=self.month_bytes_up(now, contribution.bytes_up))

    def month_bytes_up(self, now: dt.datetime, bytes_up_now: int | None = None) -> int:
        """Sent this calendar month: the days written, what is noted, and (given the counter now) the rest."""
        store = self.store()
        if store is None:
            return 0
        totals = node_history.Totals(bytes_up=bytes_up_now) if bytes_up_now is not None else None
        return store.month_bytes_up(now) + self._recorder.pending_bytes_up(now, totals)

    def _stack_bytes(self) -> int:
        serving = self.ctl.serving
        stack = getattr(getattr(serving, "server", None), "stack", None)
        if stack is None:
            return 0
        key = (id(stack), stack.start, stack.end)
        if self._blocks_bytes[0] != key:
            tensors = [*stack.parameters(), *stack.buffers()]
            self._blocks_bytes = (key, sum(t.numel() * t.element_size() for t in tensors))
        return self._blocks_bytes[1]

    def _chat_bytes(self) -> int:
        """The chat client's own model parts (embeddings, final norm, output layer), once a chat built them."""
        parts = self.ctl.chat.client_parts
        if parts is None:
            return 0
        if self._chat_parts[0] is not parts:
            self._chat_parts = (parts, sum(t.numel() * t.element_size() for t in [*parts.parameters(), *parts.buffers()]))
        return self._chat_parts[1]

    async def after_stats(self, stats: protocol.Stats) -> None:
        store = self.store()
        now = self._clock()
        if store is not None:
            self._recorder.note(node_history.Totals(
                tokens_served=stats.tokens_served, tokens_for_others=stats.tokens_for_others,
                tokens_used=stats.tokens_used, serving_seconds=stats.uptime_seconds, bytes_up=stats.bytes_up,
                bytes_down=stats.bytes_down), now, self._monotonic())
            seen = [(m.peer_id, m.name, m.last_seen) for m in stats.members
                    if m.online and m.peer_id != stats.peer_id and m.last_seen]
            store.remember_members(self.swarm_key(), seen)
            if self._monotonic() - self._history_at >= HISTORY_EVENT_SECONDS:
                self.send_history()
        await self.apply_rules(now)

    def send_history(self) -> None:
        store = self.store()
        if store is None:
            return
        self._history_at = self._monotonic()
        since = node_history.day_key(self._clock() - dt.timedelta(days=node_history.CHART_DAYS - 1))
        days = node_history.merged_days(store.days(since), self._recorder.pending, since)
        self.ctl.send(protocol.History(days=tuple(days)))

    # ------------------------------------------------------------------ rules

    def rules(self) -> node_rules.ServingRules:
        configured = self.ctl.config.rules
        if configured is not None:
            return configured
        if self._file_rules is None:
            self._file_rules = load_rules_file()
        return self._file_rules

    def decide(self, now: dt.datetime) -> node_rules.Decision:
        rules = self.rules()
        idle = self._idle.seconds() if rules.idle_minutes else None
        battery = self._battery() if not rules.serve_on_battery else None
        return node_rules.decide(rules, node_rules.Inputs(now=now, idle_seconds=idle, on_battery=battery,
                                                          month_bytes_up=self.month_bytes_up(now)))

    async def held_back(self) -> bool:
        """Before a start: True when a rule forbids serving now; the node then drains what it serves and says
        why, paused. Otherwise the CPU-thread rule is applied for the blocks about to load."""
        decision = self.decide(self._clock())
        if decision.serve:
            self.rule = None
            self._apply_threads()
            return False
        self.rule = decision
        await self.ctl.stop_serving()
        await self._join_anyway()
        if (self.ctl.state, self.ctl.detail) == (NodeState.PAUSED, decision.reason):
            self.ctl.send(protocol.State(state=NodeState.PAUSED, detail=decision.reason))  # heard: still paused
        self.ctl.set_state(NodeState.PAUSED, decision.reason)
        return True

    async def _join_anyway(self) -> None:
        """A PC a rule holds back is still in the swarm (its friends see it, paused; its chat works)."""
        if getattr(self.ctl.network, "dht", None) is not None:
            return
        try:
            await self.ctl.join_swarm()
        except Exception as exc:  # no model yet, an unusable code…: the next start says so
            log.info("paused by a rule, and not in the swarm yet: %s", exc)

    async def apply_rules(self, now: dt.datetime) -> None:
        ctl = self.ctl
        if not self.owner_wants_serving or ctl.busy:
            return
        decision = self.decide(now)
        if not decision.serve and ctl.state in (NodeState.SERVING, NodeState.STARTING, NodeState.DRAINING):
            self.rule = decision
            log.info("serving rule: %s", decision.reason)
            ctl.enqueue(self._rule_pause)
        elif not decision.serve and self.rule is not None and ctl.state is NodeState.PAUSED:
            self.rule = decision
            ctl.set_state(NodeState.PAUSED, decision.reason)  # the words may change ("until 18:00")
        elif decision.serve and self.rule is not None and ctl.state is NodeState.PAUSED:
            log.info("serving rules allow serving again")
            self.rule = None
            ctl.enqueue("start")

    async def _rule_pause(self) -> None:
        """Like the owner's pause (drain, then unload), with the rule's words."""
        if self.rule is None or not self.owner_wants_serving:
            return
        await self.ctl.stop_serving()
        self.ctl.set_state(NodeState.PAUSED, self.rule.reason)

    def _apply_threads(self) -> None:
        """The CPU-thread rule, for the blocks this start loads (torch's own default when 0)."""
        threads = self.rules().cpu_threads
        if not threads and self._threads_default is None:
            return
        import torch

        if self._threads_default is None:
            self._threads_default = torch.get_num_threads()
        torch.set_num_threads(threads or self._threads_default)


def load_rules_file(folder=None) -> node_rules.ServingRules:
    """The rules of `rules.json` in the config folder (a PC without the app), or none when it is missing or bad."""
    path = (folder or paths.config_dir()) / RULES_FILE
    try:
        return node_rules.parse_rules(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return node_rules.ServingRules()
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return node_rules.ServingRules()
