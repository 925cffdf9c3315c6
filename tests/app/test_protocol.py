"""core.protocol: every message round-trips; bad lines are refused with a message that says what is wrong."""

from __future__ import annotations

import json

import pytest

from potluck.core import protocol as p
from potluck.core.protocol import NodeState, ProtocolError

MEMBER = p.Member(peer_id="QmAna", name="Ana's desktop", state="online", start_block=0, end_block=12, online=True)
HOP = p.RouteHop(peer_id="QmAna", name="Ana's desktop", start_block=0, end_block=12)

ROUND_TRIP = [
    p.Start(), p.Pause(), p.Resume(), p.Drain(), p.Shutdown(), p.Refresh(),
    p.Generate(request_id="r1", prompt="Once upon a time"),
    p.Generate(request_id="r2", messages=(p.ChatMessage("system", "Be brief."), p.ChatMessage("user", "Hi")),
               max_new_tokens=32, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.1, seed=7),
    p.Cancel(request_id="r1"),
    p.SetConfig(values={"model": "org/tiny", "memory_cap_bytes": 8 * 2**30, "nested": {"a": [1, 2.5, None, True]}}),
    p.Hello(version="0.1.0", pid=4242),
    *[p.State(state=s, detail=f"now {s.value}") for s in NodeState],
    p.Sizing(num_blocks=12, start_block=12, end_block=24, total_blocks=80, explanation="12 blocks fit.",
             numbers={"free_memory_bytes": 12_000_000_000, "reserve_bytes": 2e9}),
    p.Stats(),
    p.Stats(start_block=12, end_block=24, total_blocks=80, tokens_served=10, sessions_served=2, active_sessions=1,
            uptime_seconds=12.5, bytes_up=1, bytes_down=2, memory_used_bytes=3, memory_free_bytes=4,
            throughput_tokens_per_second=40.0, tokens_used=5, members=(MEMBER,), coverage=(1, 0, 2), peer_id="QmMe"),
    p.Token(request_id="r1", text=" wörld \n ✓", token_id=17),
    p.Done(request_id="r1", text="hello", token_count=2, tokens_per_second=9.5, route=(HOP,), stop_reason="length"),
    p.Alert(level=p.AlertLevel.CRITICAL, text="Block 12 has no server left", blocks=(12,)),
    p.Error(message="model not found"),
    p.Error(message="swarm unreachable", request_id="r1"),
    p.Log(line="loaded 12 blocks"),
]


@pytest.mark.parametrize("msg", ROUND_TRIP, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    line = p.encode(msg)
    assert "\n" not in line and line.isascii()
    wire = json.loads(line)
    assert wire["v"] == p.PROTOCOL_VERSION and wire["kind"] == msg.KIND.value
    assert p.decode(line) == msg
    assert p.decode(line.encode()) == msg  # bytes straight from a pipe


def test_every_kind_has_exactly_one_class_and_a_direction():
    assert set(p.MESSAGE_CLASSES) == set(p.Kind)
    commands = {k.value for k in p.Kind if k.is_command}
    assert commands == {"start", "pause", "resume", "drain", "shutdown", "generate", "cancel", "set_config", "refresh",
                        "swarm_refresh", "invite_create", "invite_cancel", "revoke", "leave", "join", "switch"}


def test_unknown_fields_are_ignored_for_forward_compatibility():
    line = json.dumps({"v": 1, "kind": "hello", "version": "9.9", "pid": 1, "gpu": "H100", "extra": [1]})
    assert p.decode(line) == p.Hello(version="9.9", pid=1)
    nested = {"v": 1, "kind": "stats", "members": [{**MEMBER.__dict__, "latency_ms": 3}]}
    assert p.decode(json.dumps(nested)).members == (MEMBER,)


def test_optional_fields_take_their_defaults():
    assert p.decode('{"v":1,"kind":"state","state":"serving"}') == p.State(state=NodeState.SERVING, detail="")
    assert p.decode('{"v":1,"kind":"error","message":"x"}').request_id is None
    assert p.decode('{"v":1,"kind":"error","message":"x","request_id":null}').request_id is None


def test_integers_are_accepted_for_float_fields():
    done = p.decode('{"v":1,"kind":"done","request_id":"a","text":"","token_count":0,"tokens_per_second":3}')
    assert done.tokens_per_second == 3.0 and isinstance(done.tokens_per_second, float)


BAD_LINES = [
    ("", "empty line"),
    ("   \n", "empty line"),
    ("hello there", "not JSON"),
    ('{"v":1,"kind":"hello"', "not JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('"text"', "must be a JSON object"),
    ('{"kind":"start"}', "no protocol version"),
    ('{"v":2,"kind":"start"}', "unsupported protocol version 2"),
    ('{"v":"1","kind":"start"}', "unsupported protocol version '1'"),
    ('{"v":true,"kind":"start"}', "unsupported protocol version True"),
    ('{"v":1}', "no 'kind'"),
    ('{"v":1,"kind":5}', "no 'kind'"),
    ('{"v":1,"kind":"explode"}', "unknown message kind 'explode'"),
    ('{"v":1,"kind":"hello","pid":1}', "hello: missing field 'version'"),
    ('{"v":1,"kind":"hello","version":"1","pid":"12"}', "hello.pid must be an integer"),
    ('{"v":1,"kind":"hello","version":"1","pid":1.5}', "hello.pid must be an integer"),
    ('{"v":1,"kind":"hello","version":"1","pid":true}', "hello.pid must be an integer"),
    ('{"v":1,"kind":"hello","version":1,"pid":1}', "hello.version must be a string"),
    ('{"v":1,"kind":"state","state":"sleeping"}', "state.state must be one of"),
    ('{"v":1,"kind":"state","state":null}', "state.state must be one of"),
    ('{"v":1,"kind":"cancel","request_id":null}', "cancel.request_id must be a string"),
    ('{"v":1,"kind":"generate","request_id":"a","prompt":"x","seed":null,"messages":null,"top_k":null}',
     "generate.top_k must be an integer"),
    ('{"v":1,"kind":"stats","uptime_seconds":NaN}', "NaN is not allowed"),
    ('{"v":1,"kind":"stats","uptime_seconds":Infinity}', "Infinity is not allowed"),
    ('{"v":1,"kind":"stats","uptime_seconds":1e999}', "must be a finite number"),
    ('{"v":1,"kind":"stats","tokens_served":-1}', "tokens_served must be >= 0"),
    ('{"v":1,"kind":"stats","start_block":5,"end_block":2}', "start_block <= end_block"),
    ('{"v":1,"kind":"stats","coverage":[1,-1]}', "coverage counts must be >= 0"),
    ('{"v":1,"kind":"stats","coverage":"12"}', "stats.coverage must be a list"),
    ('{"v":1,"kind":"stats","members":[{"peer_id":"a"}]}', "stats.members[0]: missing field 'name'"),
    ('{"v":1,"kind":"stats","members":[5]}', "stats.members[0] must be an object"),
    ('{"v":1,"kind":"sizing","num_blocks":1,"start_block":0,"end_block":9,"total_blocks":4,"explanation":""}',
     "block range must lie in 0..total_blocks"),
    ('{"v":1,"kind":"sizing","num_blocks":1,"start_block":0,"end_block":1,"total_blocks":4,"explanation":"",'
     '"numbers":[1]}', "sizing.numbers must be an object"),
    ('{"v":1,"kind":"generate","request_id":"a"}', "give exactly one of messages or prompt"),
    ('{"v":1,"kind":"generate","request_id":"a","prompt":"x","messages":[{"role":"user","content":"y"}]}',
     "give exactly one of messages or prompt"),
    ('{"v":1,"kind":"generate","request_id":"a","messages":[]}', "messages must not be empty"),
    ('{"v":1,"kind":"generate","request_id":"a","messages":[{"role":"robot","content":"y"}]}', "role must be one of"),
    ('{"v":1,"kind":"generate","request_id":"","prompt":"x"}', "request_id must not be empty"),
    ('{"v":1,"kind":"generate","request_id":"a","prompt":"x","max_new_tokens":0}', "max_new_tokens must be in"),
    ('{"v":1,"kind":"generate","request_id":"a","prompt":"x","top_p":0}', "top_p must be in (0, 1]"),
    ('{"v":1,"kind":"generate","request_id":"a","prompt":"x","temperature":-1}', "temperature must be >= 0"),
    ('{"v":1,"kind":"generate","request_id":"a","prompt":"x","seed":-3}', "seed must be >= 0"),
    ('{"v":1,"kind":"set_config","values":"model=x"}', "set_config.values must be an object"),
    ('{"v":1,"kind":"alert","level":"panic","text":"x"}', "alert.level must be one of"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES, ids=[m for _l, m in BAD_LINES])
def test_bad_lines_are_refused_with_a_clear_message(line, message):
    with pytest.raises(ProtocolError) as info:
        p.decode(line)
    assert message in str(info.value)


def test_invalid_utf8_and_overlong_lines_are_refused():
    with pytest.raises(ProtocolError, match="not UTF-8"):
        p.decode(b'{"v":1,"kind":"log","line":"\xff"}')
    with pytest.raises(ProtocolError, match="too long"):
        p.decode('{"v":1,"kind":"log","line":"' + "x" * p.MAX_LINE_CHARS + '"}')


def test_direction_is_checked():
    assert isinstance(p.decode_command(p.encode(p.Start())), p.Start)
    assert isinstance(p.decode_event(p.encode(p.Hello(version="1", pid=1))), p.Hello)
    with pytest.raises(ProtocolError, match="expected an event, got the command 'start'"):
        p.decode_event(p.encode(p.Start()))
    with pytest.raises(ProtocolError, match="expected a command, got the event 'hello'"):
        p.decode_command(p.encode(p.Hello(version="1", pid=1)))


def test_encode_refuses_non_messages_and_non_finite_numbers():
    with pytest.raises(TypeError):
        p.encode(p.Member(peer_id="a", name="", state="online", start_block=0, end_block=1, online=True))
    with pytest.raises(ProtocolError, match="done: Out of range float"):
        p.encode(p.Done(request_id="a", text="", token_count=0, tokens_per_second=float("inf")))
    with pytest.raises(ProtocolError, match="uptime_seconds must be >= 0, got nan"):
        p.Stats(uptime_seconds=float("nan"))


@pytest.mark.parametrize("make", [
    lambda: p.Generate(request_id="a"),
    lambda: p.Generate(request_id="a", prompt="x", top_k=-1),
    lambda: p.Stats(start_block=3, end_block=1),
    lambda: p.Member(peer_id="a", name="", state="online", start_block=4, end_block=2, online=True),
    lambda: p.ChatMessage(role="narrator", content="x"),
])
def test_constructing_an_invalid_message_fails_on_the_sending_side_too(make):
    with pytest.raises(ProtocolError):
        make()
