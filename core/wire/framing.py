"""Frames on a stream: an 8-byte big-endian length, then the body, whose first byte says what it is.

    J + UTF-8 JSON object       control (see core/wire/control.py)
    T + 18-byte header + bytes  one step's hidden states (core/wire/tensors.py)
    A + 12-byte header          a server's acknowledgement of a step (core/wire/tensors.py)

Every reader checks a frame's length before reading it. Standard library only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from potluck.core import typed_json

HEADER_LEN = 8  # hivemind's frame length prefix
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the largest frame sent or accepted (hivemind's unary limit, kept for streams)
MAX_JSON_BYTES = 64 * 1024  # the largest control message

KIND_JSON = b"J"
KIND_STEP = b"T"
KIND_ACK = b"A"


class WireError(typed_json.TypedJsonError):
    """A malformed or unexpected message; the receiver answers with an error and keeps serving."""


async def send(writer: asyncio.StreamWriter, body: bytes) -> int:
    """Send one frame; returns the bytes put on the stream (for accounting)."""
    writer.write(len(body).to_bytes(HEADER_LEN, "big") + body)
    await writer.drain()
    return HEADER_LEN + len(body)


async def receive(reader: asyncio.StreamReader, limit_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """Receive one frame body. Raises WireError for a frame over `limit_bytes` (before reading it), and
    asyncio.IncompleteReadError / ConnectionError when the stream ends."""
    header = await reader.readexactly(HEADER_LEN)
    length = int.from_bytes(header, "big")
    if length > limit_bytes:
        raise WireError(f"frame of {length} bytes exceeds the {limit_bytes}-byte limit")
    return await reader.readexactly(length)


def json_frame(data: dict[str, Any]) -> bytes:
    """A JSON frame body for `data` (raw dicts: the join handshake; typed messages go through core/wire/control)."""
    return KIND_JSON + typed_json.dumps(data).encode()


def parse_json_frame(body: bytes, limit_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object of a J frame. Raises WireError for another kind, oversized, deep or malformed JSON."""
    if body[:1] != KIND_JSON:
        raise WireError("expected a JSON message")
    if len(body) - 1 > limit_bytes:
        raise WireError("control message too large")
    try:
        return typed_json.parse_object(body[1:], max_chars=limit_bytes)
    except typed_json.TypedJsonError as exc:
        raise WireError(f"control message: {exc}") from None
