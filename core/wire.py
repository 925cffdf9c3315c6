"""The data plane's messages: how hidden states and control messages travel on a stream. No pickle, ever.

Every message is one hivemind raw-stream frame (an 8-byte length, then the body). The body's first byte says
what it is:

- ``J`` + a UTF-8 JSON object: control (open, opened, error, close, history ...). Small and rare.
- ``T`` + an 18-byte header + raw tensor bytes: one step's hidden states, shape [1, n_tokens, hidden].
- ``A`` + a 12-byte header: a server's acknowledgement that it finished a step (sent to the client when the
  server pushed its output to the next server instead of returning it).

Tensor headers are fixed binary so that a decode step costs ~27 bytes on top of the hidden state itself.
Every decoder checks sizes against what the receiver expects and raises `WireError` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass
from typing import Any

import torch

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the largest frame we send or accept (hivemind's unary limit, kept for streams)
MAX_JSON_BYTES = 64 * 1024
HEADER_LEN = 8  # hivemind's frame length prefix

_STEP = struct.Struct("<IIIIBB")  # step_id, position, n_tokens, hidden, dtype code, flags
_ACK = struct.Struct("<III")  # step_id, position, n_tokens
_DTYPE_CODES = {torch.float32: 1, torch.bfloat16: 2, torch.float16: 3}
_CODE_DTYPES = {v: k for k, v in _DTYPE_CODES.items()}

FLAG_NO_FORWARD = 1  # replay step: update the cache and history, acknowledge, but neither push nor return it


class WireError(ValueError):
    """A malformed or unexpected message; the receiver answers with an error and keeps serving."""


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


def encode_json(message: dict[str, Any]) -> bytes:
    return b"J" + json.dumps(message, separators=(",", ":")).encode()


def encode_step(step: Step) -> bytes:
    hidden = step.hidden
    if hidden.dim() != 3 or hidden.shape[0] != 1:
        raise WireError(f"a step carries one sequence of shape [1, n, hidden], got {tuple(hidden.shape)}")
    code = _DTYPE_CODES.get(hidden.dtype)
    if code is None:
        raise WireError(f"dtype {hidden.dtype} cannot travel")
    header = _STEP.pack(step.step_id, step.position, hidden.shape[1], hidden.shape[2], code, step.flags)
    payload = hidden.detach().contiguous().view(torch.uint8).numpy().tobytes()
    return b"T" + header + payload


def encode_ack(ack: Ack) -> bytes:
    return b"A" + _ACK.pack(ack.step_id, ack.position, ack.n_tokens)


def decode(body: bytes, *, hidden_size: int | None = None) -> dict | Step | Ack:
    """Decode one frame body. With `hidden_size`, a tensor of another width is refused."""
    if not body:
        raise WireError("empty message")
    kind, rest = body[:1], body[1:]
    if kind == b"J":
        if len(rest) > MAX_JSON_BYTES:
            raise WireError("control message too large")
        try:
            message = json.loads(rest)
        except (ValueError, UnicodeDecodeError):
            raise WireError("control message is not valid JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            raise WireError("control message must be an object with an 'op'")
        return message
    if kind == b"A":
        if len(rest) != _ACK.size:
            raise WireError("malformed acknowledgement")
        return Ack(*_ACK.unpack(rest))
    if kind == b"T":
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


async def send(writer: asyncio.StreamWriter, body: bytes) -> int:
    """Send one frame; returns the bytes put on the stream (for accounting)."""
    writer.write(len(body).to_bytes(HEADER_LEN, "big") + body)
    await writer.drain()
    return HEADER_LEN + len(body)


async def receive(reader: asyncio.StreamReader) -> bytes:
    """Receive one frame body. Raises WireError for an oversized frame, EOF errors when the stream ends."""
    header = await reader.readexactly(HEADER_LEN)
    length = int.from_bytes(header, "big")
    if length > MAX_MESSAGE_BYTES:
        raise WireError(f"frame of {length} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    return await reader.readexactly(length)
