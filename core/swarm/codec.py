"""Small binary encodings shared by invite codes and identity files: base58 (Bitcoin alphabet) and varints."""

from __future__ import annotations

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(raw: bytes) -> str:
    n, out = int.from_bytes(raw, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = B58_ALPHABET[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def b58decode(text: str) -> bytes:
    """Raises ValueError for a character outside the alphabet."""
    n = 0
    for c in text:
        n = n * 58 + B58_ALPHABET.index(c)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


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
