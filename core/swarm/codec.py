"""Small binary encodings shared by invite codes and identity files: base58 (the `base58` library) and varints."""

from __future__ import annotations

import base58


def b58encode(raw: bytes) -> str:
    """Base58 (Bitcoin alphabet), as peer ids are written."""
    return base58.b58encode(raw).decode("ascii")


def b58decode(text: str) -> bytes:
    """Raises ValueError for a character outside the alphabet."""
    return base58.b58decode(text)


def varint(n: int) -> bytes:
    """Unsigned LEB128, as protobuf and multiformats write it."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def read_varint(data: bytes, i: int, max_bits: int = 64) -> tuple[int, int]:
    """The varint at data[i:], and the index after it. ValueError when it runs past `max_bits`, IndexError when
    the data ends inside it."""
    n = shift = 0
    while True:
        b = data[i]
        n, i, shift = n | (b & 0x7F) << shift, i + 1, shift + 7
        if not b & 0x80:
            return n, i
        if shift >= max_bits:
            raise ValueError("varint too long")
