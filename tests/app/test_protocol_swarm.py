"""core.protocol's swarm page messages: each round-trips, keeps its direction, refuses bad values with words, and
tolerates fields a newer peer adds; the join command's code never shows in a repr (logs)."""

from __future__ import annotations

import json

import pytest

from potluck.core import protocol as p
from potluck.core.protocol import ProtocolError

MEMBER = p.SwarmMember(peer_id="QmAna", name="Ana's desktop", role="owner", online=True, state="online",
                       start_block=0, end_block=12, last_seen=1_790_000_000.5, this_pc=True)
VIEW = p.SwarmView(swarm_id="0123456789abcdef", name="Friday night", model_id="/home/ana/m.gguf",
                   model_uid="SmolLM2-135M-Instruct-Q4_1@1a2b3c4d5e6f", model_here="/home/ben/m.gguf", model_is_path=True,
                   peer_id="QmBen", listen_host="100.101.1.2", secret_where="the system keyring", request_id="r9",
                   members=(MEMBER, p.SwarmMember(peer_id="QmBen", name="Ben", active=False)),
                   invites=(p.InviteInfo("0123456789ab", 1_800_000_000, 0, 0, True),),
                   known=(p.KnownSwarm("fedcba9876543210", "Book club", "org/m", True, True),))

ROUND_TRIP = [
    p.SwarmRefresh(request_id="r1"), p.InviteCreate(request_id="r2"),
    p.InviteCreate(request_id="r3", expires_seconds=3600, max_uses=0, this_pc_only=True),
    p.InviteCancel(request_id="r4", invite_id="0123456789ab"), p.Revoke(request_id="r5", peer_id="QmBen"),
    p.Leave(request_id="r6"), p.Leave(request_id="r6b", swarm_id="fedcba9876543210"),
    p.Join(request_id="r7", code="potluck-abc", model="/home/ben/m.gguf", pc_name="Ben"),
    p.Switch(request_id="r8", swarm_id="fedcba9876543210", model="org/m"),
    p.SwarmView(), VIEW,
    p.InviteMade(request_id="r2", code="potluck-abc", invite_id="0123456789ab", swarm_name="Friday night",
                 expires_at=1_800_000_000, max_uses=1, bootstrap=("/ip4/127.0.0.1/tcp/1/p2p/QmAna",), this_pc_only=True),
    p.SwarmResult(request_id="r7", op="join", ok=False, message="This code has already been used."),
]


@pytest.mark.parametrize("msg", ROUND_TRIP, ids=lambda m: type(m).__name__)
def test_round_trip_and_direction(msg):
    line = p.encode(msg)
    assert "\n" not in line and line.isascii() and json.loads(line)["kind"] == msg.KIND.value
    assert p.decode(line) == msg and type(p.decode(line)) is type(msg)
    if msg.KIND.is_command:
        assert p.decode_command(line) == msg
        with pytest.raises(ProtocolError, match="expected an event"):
            p.decode_event(line)
    else:
        assert p.decode_event(line) == msg


@pytest.mark.parametrize(("line", "words"), [
    ({"kind": "invite_create", "request_id": "x", "max_uses": -1}, "max_uses must be in 0..65535"),
    ({"kind": "invite_create", "request_id": "x", "expires_seconds": 5}, "between 1 minute and 365 days"),
    ({"kind": "invite_create", "request_id": ""}, "request_id must be 1 to 128 characters"),
    ({"kind": "invite_cancel", "request_id": "x", "invite_id": "nothex"}, "invite_id must be 12 hex characters"),
    ({"kind": "switch", "request_id": "x", "swarm_id": "Friday"}, "swarm_id must be 16 lowercase hex characters"),
    ({"kind": "join", "request_id": "x"}, "missing field 'code'"),
    ({"kind": "join", "request_id": "x", "code": ""}, "code must be 1 to"),
    ({"kind": "swarm", "members": [{"peer_id": "Qm", "name": "a", "start_block": 3, "end_block": 1}]},
     "bad block range 3:1"),
    ({"kind": "swarm", "swarm_id": "xyz"}, "swarm_id must be 16 lowercase hex characters"),
    ({"kind": "swarm_result", "request_id": "x", "op": "join", "ok": "yes"}, "ok must be true or false"),
])
def test_bad_values_are_refused_with_words(line, words):
    with pytest.raises(ProtocolError, match=words):
        p.decode(json.dumps({"v": 1, **line}))


def test_newer_fields_are_ignored_and_the_code_stays_out_of_reprs():
    wire = json.loads(p.encode(VIEW))
    wire["members"][0]["latency_ms"] = 3
    wire["colour"] = "teal"
    assert p.decode(json.dumps(wire)) == VIEW
    join = p.Join(request_id="r7", code="potluck-secret-code")
    assert "secret" not in repr(join) and p.decode(p.encode(join)).code == "potluck-secret-code"
