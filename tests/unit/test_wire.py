import math

import pytest
import torch

from potluck.core import wire


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n_tokens", [1, 7])
def test_step_round_trip(dtype, n_tokens):
    hidden = torch.randn(1, n_tokens, 32).to(dtype)
    step = wire.decode(wire.encode_step(wire.Step(3, 11, hidden, wire.FLAG_NO_FORWARD)), hidden_size=32)
    assert (step.step_id, step.position, step.flags, step.n_tokens) == (3, 11, wire.FLAG_NO_FORWARD, n_tokens)
    assert step.hidden.dtype is dtype and torch.equal(step.hidden, hidden)


def test_step_overhead_is_small():
    body = wire.encode_step(wire.Step(1, 0, torch.zeros(1, 1, 256)))
    assert len(body) + wire.HEADER_LEN - 256 * 4 == 27  # bytes on top of the hidden state itself


def test_json_and_ack_round_trip():
    assert wire.decode(wire.encode_json({"op": "open", "x": [1, 2]})) == {"op": "open", "x": [1, 2]}
    assert wire.decode(wire.encode_ack(wire.Ack(9, 4, 2))) == wire.Ack(9, 4, 2)


@pytest.mark.parametrize("body,message", [
    (b"", "empty"),
    (b"Z123", "unknown message kind"),
    (b"J[1,2]", "object with an 'op'"),
    (b"J{\"op\": 5}", "object with an 'op'"),
    (b"J\xff\xfe", "not valid JSON"),
    (b"J" + b"{" * (wire.MAX_JSON_BYTES + 1), "too large"),
    (b"A123", "malformed acknowledgement"),
    (b"T1234", "truncated step header"),
])
def test_malformed_bodies(body, message):
    with pytest.raises(wire.WireError, match=message):
        wire.decode(body)


def test_width_mismatch_and_non_finite():
    body = wire.encode_step(wire.Step(1, 0, torch.zeros(1, 2, 16)))
    with pytest.raises(wire.WireError, match="hidden size 16"):
        wire.decode(body, hidden_size=32)
    for bad in (math.nan, math.inf):
        with pytest.raises(wire.WireError, match="NaN or infinity"):
            wire.decode(wire.encode_step(wire.Step(1, 0, torch.full((1, 1, 4), bad))))


@pytest.mark.parametrize("shape", [(2, 1, 4), (1, 4), (4,)])
def test_encode_refuses_batches_and_flat_tensors(shape):
    with pytest.raises(wire.WireError, match="one sequence"):
        wire.encode_step(wire.Step(1, 0, torch.zeros(shape)))


@pytest.mark.parametrize("hidden,dtype,expected", [
    (8192, torch.float16, 255), (1024, torch.float32, 1023), (2 * 1024 * 1024, torch.float32, 1),
])
def test_max_chunk_tokens(hidden, dtype, expected):
    assert wire.max_chunk_tokens(hidden, dtype) == expected
    assert expected * hidden * torch.empty((), dtype=dtype).element_size() <= wire.MAX_MESSAGE_BYTES or expected == 1
