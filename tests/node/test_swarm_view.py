"""The node's swarm page helpers, pure: the `swarm` event built from the member list and the swarm's records, a
friend's own copy of the model checked against the swarm's (before and after opening), the addresses an invite
may name (never only 127.0.0.1 unless asked), and the `swarm_id` setting."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from potluck.core import protocol
from potluck.core.node import swarm_ops
from potluck.core.node.config import NodeConfig, apply_values, network_key
from potluck.core.node.plan import NodeSetupError
from potluck.core.swarm import lifecycle
from potluck.core.swarm.store import InviteRecord, SwarmInfo
from potluck.core.swarm.tailscale import TailscaleReport, TailscaleState

SWARM = "0123456789abcdef"
UID = "SmolLM2-135M-Instruct-Q4_1@1a2b3c4d5e6f"


@dataclass(frozen=True)
class Entry:  # what build_view reads of a member list entry (core/swarm/membership.Member has these)
    peer_id: str
    name: str
    revoked: bool = False
    role: str = ""


@dataclass(frozen=True)
class Listed:
    members: tuple[Entry, ...]

    def get(self, peer_id):
        return next((m for m in self.members if m.peer_id == peer_id), None)


def info(model_id="/home/ana/smol.gguf", revision=UID, created_here=False, invites=()) -> SwarmInfo:
    return SwarmInfo(SWARM, "Friday night", model_id, revision, 1.0, created_here, invites=invites)


def server(peer_id, name, state="online", blocks=(0, 4)) -> protocol.Member:
    return protocol.Member(peer_id=peer_id, name=name, state=state, start_block=blocks[0], end_block=blocks[1],
                           online=state != "offline")


def facts(entries, own="QmBen", **info_kwargs) -> swarm_ops.SwarmFacts:
    known = (protocol.KnownSwarm(SWARM, "Friday night", "/home/ana/smol.gguf"),)
    return swarm_ops.SwarmFacts(info(**info_kwargs), Listed(tuple(entries)), own, known, "the system keyring")


def test_the_view_joins_the_member_list_with_the_swarms_records():
    entries = [Entry("QmAna", "Ana's desktop", role="owner"), Entry("QmBen", "Ben's mini PC"),
               Entry("QmCho", "Cho's laptop", revoked=True), Entry("QmDan", "Dan", role="admin")]
    servers = (server("QmBen", "Ben's mini PC", blocks=(2, 4)), server("QmAna", "Ana's desktop", blocks=(0, 2)),
               server("QmCho", "Cho's laptop"), server("QmDan", "Dan", state="offline"))
    record = InviteRecord("0123456789ab", "00" * 32, 1.0, 2_000_000_000, 1, 0)
    view = swarm_ops.build_view(facts(entries, invites=(record,)), servers=servers, last_seen={"QmDan": 1234.5},
                                listen_host="127.0.0.1", model_here="/home/ben/smol.gguf", request_id="r1")
    rows = [(m.name, m.role, m.active, m.online, m.state, (m.start_block, m.end_block), m.last_seen, m.this_pc)
            for m in view.members]
    assert rows == [
        ("Ana's desktop", "owner", True, True, "online", (0, 2), 0.0, False),
        ("Ben's mini PC", "member", True, True, "online", (2, 4), 0.0, True),
        ("Cho's laptop", "member", False, False, "offline", (0, 0), 0.0, False),  # removed: never shown serving
        ("Dan", "admin", True, False, "offline", (0, 0), 1234.5, False),
    ]
    assert (view.swarm_id, view.model_uid, view.model_here, view.model_is_path, view.model_found) == \
        (SWARM, UID, "/home/ben/smol.gguf", True, False)
    assert (view.peer_id, view.this_pc_removed, view.listen_host, view.secret_where, view.request_id) == \
        ("QmBen", False, "127.0.0.1", "the system keyring", "r1")
    assert view.invites == (protocol.InviteInfo("0123456789ab", 2_000_000_000, 1, 0, False),)


def test_a_removed_pc_sees_so_and_no_swarm_is_an_empty_view():
    view = swarm_ops.build_view(facts([Entry("QmAna", "Ana"), Entry("QmBen", "Ben", revoked=True)]), servers=(),
                                last_seen={}, listen_host="", model_here="")
    assert view.this_pc_removed and view.model_here == "/home/ana/smol.gguf"
    empty = swarm_ops.build_view(swarm_ops.SwarmFacts(None, None, "", ()), servers=(), last_seen={}, listen_host="",
                                 model_here="")
    assert empty == protocol.SwarmView()


def test_what_changes_every_tick_is_not_worth_sending():
    view = swarm_ops.build_view(facts([Entry("QmBen", "Ben")]), servers=(server("QmBen", "Ben"),),
                                last_seen={"QmBen": 5.0}, listen_host="", model_here="")
    later = swarm_ops.build_view(facts([Entry("QmBen", "Ben")]), servers=(server("QmBen", "Ben"),),
                                 last_seen={"QmBen": 9.0}, listen_host="", model_here="")
    assert view != later and swarm_ops.essentials(view) == swarm_ops.essentials(later)


def network(mode="join", model="", swarm_info=None) -> swarm_ops.SwarmNetwork:
    net = swarm_ops.SwarmNetwork(NodeConfig(mode=mode, model=model), environ={})
    if swarm_info is not None:
        net.member = SimpleNamespace(node=SimpleNamespace(info=swarm_info, swarm_id=SWARM))
    return net


@pytest.mark.parametrize(("expected", "got", "words"), [
    (UID, UID, ""),
    ("", "anything@123456789abc", ""),  # the swarm recorded no identity (made before, or from a hub id)
    (UID, "SmolLM2-135M-Instruct-Q8_0@ffffffffffff", "Your copy is not the swarm's model: the swarm runs " + UID),
    ("tiny-llama@abcdefabcdef", "my-copy@abcdefabcdef", "rename the folder to tiny-llama"),
])
def test_a_friends_copy_is_checked_against_the_swarms_model(expected, got, words):
    net = network(swarm_info=info(revision=expected))
    if not words:
        swarm_ops.check_same_model(net, got)
        return
    with pytest.raises(NodeSetupError, match=words):
        swarm_ops.check_same_model(net, got)


def test_a_hub_swarm_records_no_identity_to_check():
    assert swarm_ops.swarm_model_uid(info(model_id="org/model", revision="main")) == ""


@pytest.mark.parametrize(("config_model", "created_here", "words"), [
    ("", False, "a file on the PC that created the swarm"),
    ("/nowhere/my-copy.gguf", False, "Your copy of the model is not at /nowhere/my-copy.gguf any more"),
    ("", True, "This swarm's model is not at /home/ana/smol.gguf any more"),
    ("/nowhere/new.gguf", None, "start the swarm again"),  # a new swarm, not made yet
])
def test_a_model_path_not_on_this_pc_points_at_the_swarm_page(config_model, created_here, words):
    net = network(model=config_model, swarm_info=None if created_here is None else info(created_here=created_here))
    with pytest.raises(NodeSetupError, match=words) as caught:
        swarm_ops.check_model_path(net, net.config)
    assert "Settings" not in str(caught.value)


def test_a_model_that_is_here_or_on_the_hub_passes(tmp_path):
    copy = tmp_path / "smol.gguf"
    copy.write_bytes(b"GGUF")
    for model, swarm_model in ((str(copy), "/home/ana/smol.gguf"), ("", "org/model")):
        net = network(model=model, swarm_info=info(model_id=swarm_model))
        swarm_ops.check_model_path(net, net.config)


PEER = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"


def maddr(host: str) -> str:
    return f"/ip4/{host}/tcp/4000/p2p/{PEER}"


@pytest.mark.parametrize(("hosts", "this_pc_only", "chosen"), [
    (["127.0.0.1", "100.101.1.1"], False, ["100.101.1.1"]),
    (["127.0.0.1", "192.168.1.20"], False, ["192.168.1.20"]),
    (["127.0.0.1"], True, ["127.0.0.1"]),
    (["127.0.0.1", "100.101.1.1"], True, ["100.101.1.1"]),  # a reachable address always wins
])
def test_the_addresses_an_invite_names(hosts, this_pc_only, chosen):
    got = lifecycle.invite_addresses([maddr(h) for h in hosts], this_pc_only=this_pc_only)
    assert got == tuple(maddr(h) for h in chosen)


def test_a_code_naming_only_loopback_is_refused_with_tailscale_advice(monkeypatch):
    monkeypatch.setattr(lifecycle.tailscale, "tailscale_state", lambda: TailscaleReport(TailscaleState.LOGGED_OUT))
    with pytest.raises(lifecycle.LifecycleError) as caught:
        lifecycle.invite_addresses([maddr("127.0.0.1")])
    assert "listens on 127.0.0.1 only" in str(caught.value) and "https://login.tailscale.com/start" in str(caught.value)
    with pytest.raises(lifecycle.LifecycleError, match="no address yet"):
        lifecycle.invite_addresses([], this_pc_only=True)


@pytest.mark.parametrize(("value", "ok"), [("fedcba9876543210", True), ("", True), ("FEDCBA9876543210", False),
                                           ("Friday night", False), (12, False)])
def test_the_swarm_id_setting(value, ok):
    applied = apply_values(NodeConfig(), {"swarm_id": value})
    assert (applied.config.swarm_id == value) if ok else (applied.problems and applied.config.swarm_id == "")
    if ok and value:
        assert network_key(applied.config) != network_key(NodeConfig())  # another swarm: another network


def test_two_not_a_member_answers_from_the_owner_in_a_row_mean_removed(monkeypatch):
    """The fallback when a removed PC's own list never hears of the revocation (the others refuse its requests):
    the owner's word, twice in a row, after the network ran a minute."""
    import asyncio

    from potluck.core.node import swarm_commands as sc

    clock = [1000.0]
    monkeypatch.setattr(sc.time, "monotonic", lambda: clock[0])
    network = SimpleNamespace(swarm=SimpleNamespace(swarm_id=SWARM), dht=object())
    commands = sc.SwarmCommands(SimpleNamespace(network=network))
    answers = iter([True, False, True, True])
    monkeypatch.setattr(commands, "_owner_refuses", lambda _net, _node: asyncio.sleep(0, next(answers)))

    def check_after(seconds: float) -> bool:
        clock[0] += seconds
        asyncio.run(commands._check_with_owner())
        return SWARM in commands._owner_says_removed

    assert not check_after(0)  # the network just started: the owner's list may lag a new member's join
    assert not check_after(sc.OWNER_CHECK_AFTER_SECONDS)  # refused once
    assert not check_after(sc.OWNER_CHECK_SECONDS)  # a member after all: the count starts again
    assert not check_after(sc.OWNER_CHECK_SECONDS)  # refused once
    assert not check_after(1)  # not yet due
    assert check_after(sc.OWNER_CHECK_SECONDS)  # refused twice in a row: removed
