"""The node's upkeep (core/node/upkeep.py) on a stand-in controller: serving rules drain and pause, lift and start
again, never override the owner's pause; the rules file of a PC without the app; history and this month's upload."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import types

import pytest

from potluck.core import protocol
from potluck.core.node.config import NodeConfig, apply_values
from potluck.core.node.history import HistoryStore
from potluck.core.node.rules import ServingRules, parse_rules
from potluck.core.node.upkeep import Upkeep, load_rules_file
from potluck.core.protocol import NodeState

WED_10 = dt.datetime(2026, 3, 4, 10, 0)
EVENINGS = parse_rules({"schedule": [{"days": [0, 1, 2, 3, 4], "start": "18:00", "end": "08:00"}]})


class Ctl:
    """What Upkeep uses of core.node.control.NodeController (its public face)."""

    def __init__(self, rules: ServingRules, state: NodeState = NodeState.SERVING):
        self.config = NodeConfig(rules=rules)
        self.state, self.detail = state, ""
        self.serving = object() if state is NodeState.SERVING else None
        self.network = None
        self.chat = types.SimpleNamespace(client_parts=None)
        self.swarm = types.SimpleNamespace(membership=None)
        self.busy = False
        self.enqueued, self.sent, self.stopped, self.joined = [], [], 0, 0

    def enqueue(self, op):
        self.enqueued.append(op)

    def set_state(self, state, detail=""):
        self.state, self.detail = state, detail

    def send(self, event):
        self.sent.append(event)

    async def stop_serving(self):
        if self.serving is not None:
            self.stopped += 1
            self.serving = None

    async def join_swarm(self):
        self.joined += 1


class Idle:
    def __init__(self, seconds):
        self.value = seconds

    def seconds(self):
        return self.value

    def close(self):
        pass


def make(tmp_path, rules, state=NodeState.SERVING, idle=None, battery=None, now=WED_10):
    ctl = Ctl(rules, state)
    upkeep = Upkeep(ctl, store_factory=lambda: HistoryStore(tmp_path / "h.sqlite3"), idle=Idle(idle),
                    battery=lambda: battery, clock=lambda: now)
    return ctl, upkeep


def test_a_rule_that_says_no_drains_then_pauses_with_its_words(tmp_path):
    ctl, upkeep = make(tmp_path, EVENINGS)
    asyncio.run(upkeep.apply_rules(WED_10))
    (op,) = ctl.enqueued
    asyncio.run(op())
    assert ctl.stopped == 1 and (ctl.state, ctl.detail) == (NodeState.PAUSED, "Paused until 18:00 (outside the schedule)")


def test_the_rule_lifts_and_the_node_starts_by_itself(tmp_path):
    ctl, upkeep = make(tmp_path, EVENINGS)
    asyncio.run(upkeep.apply_rules(WED_10))
    asyncio.run(ctl.enqueued.pop()())
    asyncio.run(upkeep.apply_rules(dt.datetime(2026, 3, 4, 18, 1)))
    assert ctl.enqueued == ["start"]


def test_the_owners_pause_always_wins(tmp_path):
    ctl, upkeep = make(tmp_path, EVENINGS, state=NodeState.PAUSED)
    upkeep.owner_wants_serving = False
    asyncio.run(upkeep.apply_rules(dt.datetime(2026, 3, 4, 19, 0)))
    asyncio.run(upkeep.apply_rules(WED_10))
    assert ctl.enqueued == [] and ctl.state is NodeState.PAUSED


@pytest.mark.parametrize("rules, idle, battery, held", [
    (ServingRules(idle_minutes=5), 10.0, None, "Paused while you use this PC (serves after 5 min without input)"),
    (ServingRules(idle_minutes=5), 600.0, None, ""),
    (ServingRules(), None, True, "Paused: on battery (serves again when plugged in)"),
    (ServingRules(serve_on_battery=True), None, True, ""),
])
def test_a_start_is_held_back_while_a_rule_says_no(tmp_path, rules, idle, battery, held):
    ctl, upkeep = make(tmp_path, rules, state=NodeState.STOPPED, idle=idle, battery=battery)
    assert asyncio.run(upkeep.held_back()) is bool(held)
    if held:
        assert (ctl.state, ctl.detail) == (NodeState.PAUSED, held)
        asyncio.run(upkeep.held_back())  # the owner's Resume: still held, and told again
        assert ctl.sent == [protocol.State(state=NodeState.PAUSED, detail=held)]


def test_history_and_this_months_upload(tmp_path):
    ctl, upkeep = make(tmp_path, ServingRules(serve_on_battery=True))
    stats = protocol.Stats(tokens_served=40, tokens_for_others=30, tokens_used=7, uptime_seconds=12.0, bytes_up=500)
    asyncio.run(upkeep.after_stats(stats))
    (history,) = [e for e in ctl.sent if isinstance(e, protocol.History)]
    assert history.days == (protocol.HistoryDay("2026-03-04", tokens_served=40, tokens_for_others=30, tokens_used=7,
                                                 serving_seconds=12.0, bytes_up=500),)
    assert upkeep.month_bytes_up(WED_10, 800) == 800  # 300 more sent since the last note
    upkeep.close()
    assert HistoryStore(tmp_path / "h.sqlite3").month_bytes_up(WED_10) == 500  # written when the node stops


def test_rules_file_of_a_pc_without_the_app(tmp_path):
    (tmp_path / "rules.json").write_text(json.dumps({"idle_minutes": 15, "serve_on_battery": True}))
    assert load_rules_file(tmp_path) == ServingRules(idle_minutes=15, serve_on_battery=True)
    (tmp_path / "rules.json").write_text("{not json")
    assert load_rules_file(tmp_path) == ServingRules()
    assert load_rules_file(tmp_path / "none") == ServingRules()


@pytest.mark.parametrize("value, rules, problem", [
    ({"idle_minutes": 3}, ServingRules(idle_minutes=3), ""),
    (None, None, ""),  # back to rules.json
    ({"idle_minutes": -3}, None, "rules: idle_minutes must be in 0..1440"),
])
def test_set_config_rules(value, rules, problem):
    applied = apply_values(NodeConfig(), {"rules": value})
    assert applied.config.rules == rules and applied.problems == ((problem,) if problem else ())
