"""The data plane's frames: tensor steps, acknowledgements and typed control messages round-trip; every malformed
body is refused with a WireError that says what is wrong (never another exception)."""

import math

import pytest
import torch

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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n_tokens", [1, 7])
def test_step_round_trip(dtype, n_tokens):
    hidden = torch.randn(1, n_tokens, 32).to(dtype)
    step = decode_frame(encode_step(Step(3, 11, hidden, FLAG_NO_FORWARD)), hidden_size=32)
    assert (step.step_id, step.position, step.flags, step.n_tokens) == (3, 11, FLAG_NO_FORWARD, n_tokens)
    assert step.hidden.dtype is dtype and torch.equal(step.hidden, hidden)


def test_step_overhead_is_small():
    body = encode_step(Step(1, 0, torch.zeros(1, 1, 256)))
    assert len(body) + framing.HEADER_LEN - 256 * 4 == 27  # bytes on top of the hidden state itself


CONTROL_MESSAGES = [
    control.Open("s1", "m@1", 0, 4, 16),
    control.Open("s1", "m@1", 2, 4, 16, next=control.NextHop("peer", "s2", ("/ip4/1.2.3.4/tcp/5/p2p/peer",)),
                 prev_peer="before"),
    control.Opened(dtype="float32"),
    control.ErrorReply("no", ErrorCode.CACHE_FULL, step_id=3, blame="peer"),
    control.Close(),
    control.HistoryRequest(upto=5, request_id=7),
    control.HistoryEnd(upto=5, request_id=7),
    control.SetNext(None),
    control.SetPrev("peer"),
    control.Relinked(),
    control.DrainNotice(DrainReason.SHRINKING, "now 0:3"),
    control.PushOpen("s9"),
    control.Ping(),
    control.Pong(12.5, {"peer_id": "p"}, {"tokens_served": 3}),
]


@pytest.mark.parametrize("message", CONTROL_MESSAGES, ids=lambda m: type(m).__name__)
def test_control_messages_round_trip(message):
    assert decode_frame(control.encode(message)) == message
    assert control.decode(control.encode(message)) == message


def test_wire_values_are_the_protocol_not_python_names():
    body = control.encode(control.ErrorReply("full", ErrorCode.CACHE_FULL))
    assert b'"op":"error"' in body and b'"code":"cache_full"' in body
    assert b'"reason":"leaving"' in control.encode(control.DrainNotice(DrainReason.LEAVING))


def test_unknown_fields_from_newer_peers_are_ignored():
    body = framing.json_frame({"op": "opened", "dtype": "bfloat16", "position": 0, "shiny_new_field": [1, 2]})
    assert control.decode(body) == control.Opened(dtype="bfloat16")


def test_ack_round_trip():
    assert decode_frame(encode_ack(Ack(9, 4, 2))) == Ack(9, 4, 2)


DEEP = b"J" + b'{"op":"open","x":' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.mark.parametrize("body,message", [
    (b"", "empty"),
    (b"Z123", "unknown message kind"),
    (b"J[1,2]", "must be a JSON object"),
    (b'J{"op": 5}', "object with an 'op'"),
    (b'J{"a": 1}', "object with an 'op'"),
    (b"J\xff\xfe", "not UTF-8"),
    (b"J{nope", "not JSON"),
    (b"J" + b"{" * (framing.MAX_JSON_BYTES + 1), "too large"),
    (DEEP, "nested deeper"),
    (b'J{"op":"history","upto":' + b"9" * 5000 + b',"request_id":1}', "too long"),
    (b'J{"op":"history","upto":NaN,"request_id":1}', "NaN"),
    (b'J{"op":"explode"}', "unknown op"),
    (b'J{"op":"history","upto":-1,"request_id":1}', "upto must be an unsigned"),
    (b'J{"op":"history","request_id":1}', "missing field 'upto'"),
    (b'J{"op":"set_prev","prev_peer":5}', "set_prev.prev_peer must be a string"),
    (b'J{"op":"set_next","next":{"peer_id":1}}', "set_next.next.peer_id must be a string"),
    (b'J{"op":"open","session_id":"","model":"m","start":0,"end":1,"max_length":1}', "session_id must be 1-64"),
    (b'J{"op":"open","session_id":"s","model":"m","start":true,"end":1,"max_length":1}', "open.start must be an integer"),
    (b'J{"op":"error","message":"x","code":"NotAMember"}', "error.code must be one of"),
    (b"A123", "malformed acknowledgement"),
    (b"T1234", "truncated step header"),
])
def test_malformed_bodies(body, message):
    with pytest.raises(framing.WireError, match=message):
        decode_frame(body)


def test_width_mismatch_and_non_finite():
    body = encode_step(Step(1, 0, torch.zeros(1, 2, 16)))
    with pytest.raises(framing.WireError, match="hidden size 16"):
        decode_frame(body, hidden_size=32)
    for bad in (math.nan, math.inf):
        with pytest.raises(framing.WireError, match="NaN or infinity"):
            decode_frame(encode_step(Step(1, 0, torch.full((1, 1, 4), bad))))


@pytest.mark.parametrize("shape", [(2, 1, 4), (1, 4), (4,)])
def test_encode_refuses_batches_and_flat_tensors(shape):
    with pytest.raises(framing.WireError, match="one sequence"):
        encode_step(Step(1, 0, torch.zeros(shape)))


@pytest.mark.parametrize("hidden,dtype,expected", [
    (8192, torch.float16, 255), (1024, torch.float32, 1023), (2 * 1024 * 1024, torch.float32, 1),
])
def test_max_chunk_tokens(hidden, dtype, expected):
    assert max_chunk_tokens(hidden, dtype) == expected
    assert expected * hidden * torch.empty((), dtype=dtype).element_size() <= framing.MAX_MESSAGE_BYTES or expected == 1


def test_framing_and_control_load_without_torch():
    import subprocess
    import sys

    code = ("import sys; import potluck.core.wire.control, potluck.core.wire.framing, potluck.core.swarm.join; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
