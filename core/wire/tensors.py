"""Step frames (one step's hidden states) and acknowledgements, and `decode_frame` for any data-plane frame.

    T + <IIIIBB header: step_id, position, n_tokens, hidden, dtype code, flags> + raw tensor bytes
    A + <III: step_id, position, n_tokens>

Tensor headers are fixed binary so that a decode step costs 27 bytes on top of the hidden state itself. Every
size is checked against what the receiver expects before the bytes are used.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import torch

from potluck.core.wire import control
from potluck.core.wire.framing import KIND_ACK, KIND_JSON, KIND_STEP, MAX_MESSAGE_BYTES, WireError

_STEP = struct.Struct("<IIIIBB")  # step_id, position, n_tokens, hidden, dtype code, flags
_ACK = struct.Struct("<III")  # step_id, position, n_tokens
_DTYPE_CODES = {torch.float32: 1, torch.bfloat16: 2, torch.float16: 3}
_CODE_DTYPES = {v: k for k, v in _DTYPE_CODES.items()}

FLAG_NO_FORWARD = 1  # replay step: update the cache and history, acknowledge, but neither push nor return it


@dataclass(frozen=True)
class Step:
    step_id: int
    position: int  # absolute position of the first token in this step
    hidden: torch.Tensor  # [1, n_tokens, hidden_size]
    flags: int = 0

    @property
    def n_tokens(self) -> int:
        return self.hidden.shape[1]


@dataclass(frozen=True)
class Ack:
    step_id: int
    position: int
    n_tokens: int


def encode_step(step: Step) -> bytes:
    hidden = step.hidden
    if hidden.dim() != 3 or hidden.shape[0] != 1:
        raise WireError(f"a step carries one sequence of shape [1, n, hidden], got {tuple(hidden.shape)}")
    code = _DTYPE_CODES.get(hidden.dtype)
    if code is None:
        raise WireError(f"dtype {hidden.dtype} cannot travel")
    header = _STEP.pack(step.step_id, step.position, hidden.shape[1], hidden.shape[2], code, step.flags)
    payload = hidden.detach().contiguous().view(torch.uint8).numpy().tobytes()
    return KIND_STEP + header + payload


def encode_ack(ack: Ack) -> bytes:
    return KIND_ACK + _ACK.pack(ack.step_id, ack.position, ack.n_tokens)


def decode_frame(body: bytes, *, hidden_size: int | None = None) -> control.ControlMessage | Step | Ack:
    """Decode one frame body. With `hidden_size`, a tensor of another width is refused."""
    if not body:
        raise WireError("empty message")
    kind, rest = body[:1], body[1:]
    if kind == KIND_JSON:
        return control.decode(body)
    if kind == KIND_ACK:
        if len(rest) != _ACK.size:
            raise WireError("malformed acknowledgement")
        return Ack(*_ACK.unpack(rest))
    if kind == KIND_STEP:
        return _decode_step(rest, hidden_size)
    raise WireError(f"unknown message kind {kind!r}")


def _decode_step(rest: bytes, hidden_size: int | None) -> Step:
    if len(rest) < _STEP.size:
        raise WireError("truncated step header")
    step_id, position, n_tokens, width, code, flags = _STEP.unpack_from(rest)
    dtype = _CODE_DTYPES.get(code)
    if dtype is None:
        raise WireError(f"unknown dtype code {code}")
    if n_tokens < 1:
        raise WireError("a step must carry at least one token")
    if hidden_size is not None and width != hidden_size:
        raise WireError(f"hidden size {width} does not match the model's {hidden_size}")
    expected = n_tokens * width * torch.empty((), dtype=dtype).element_size()
    payload = rest[_STEP.size:]
    if len(payload) != expected:
        raise WireError(f"step payload has {len(payload)} bytes, expected {expected}")
    if flags & ~FLAG_NO_FORWARD:
        raise WireError(f"unknown step flags {flags:#x}")
    tensor = torch.frombuffer(bytearray(payload), dtype=torch.uint8).view(dtype).reshape(1, n_tokens, width)
    if dtype.is_floating_point and not torch.isfinite(tensor).all():
        raise WireError("hidden states contain NaN or infinity")
    return Step(step_id, position, tensor, flags)


def max_chunk_tokens(hidden_size: int, dtype: torch.dtype) -> int:
    """The most tokens one step message may carry without passing MAX_MESSAGE_BYTES."""
    per_token = hidden_size * torch.empty((), dtype=dtype).element_size()
    return max(1, (MAX_MESSAGE_BYTES - 64) // per_token)
