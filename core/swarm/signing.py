"""Signatures made with a member's libp2p identity (an RSA key, as hivemind writes it), for the member list and the
secret handouts. No hivemind: `cryptography` only, imported when a key is first used, so light commands stay quick.

    signer = Signer.from_identity(path)          # this PC's identity in one swarm
    sig = signer.sign(statement_bytes("profile", swarm_id, body))
    verify(signer.public_key, message, sig)      # True / False, never raises for bad input

Keys travel as base64 of the SubjectPublicKeyInfo DER; `peer_id_of_key(key)` hashes one exactly as libp2p does,
so a key is checked against the peer id it claims with no other trust. Signatures are RSA PKCS#1 v1.5 with
SHA-256 over `statement_bytes`: a domain tag, the kind of statement and the swarm id come first, so a signature
made for one purpose, one swarm, or one kind of statement is never valid for another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from potluck.core.swarm.codec import b58encode, read_varint, varint

DOMAIN = b"potluck/v2/"
MAX_KEY_CHARS = 1200  # base64 of an RSA public key up to 4096 bits
MAX_SIG_CHARS = 700  # base64 of an RSA-4096 signature
_VERIFY_CACHE = 8192  # verified (key, message, signature) triples remembered


class SigningError(ValueError):
    """A key or identity that cannot be used for signing; the message says which and why."""


def statement_bytes(kind: str, swarm_id: str, body: dict[str, Any]) -> bytes:
    """The bytes a statement's signature covers: domain, kind, swarm id, then canonical JSON of the body."""
    try:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError):
        raise SigningError("a statement must be plain JSON data") from None
    return DOMAIN + kind.encode() + b"\n" + swarm_id.encode() + b"\n" + canonical.encode()


def key_proto(der: bytes) -> bytes:
    """libp2p's crypto.proto key message {Type: RSA, Data: der} (for public and private keys alike)."""
    return b"\x08\x00\x12" + varint(len(der)) + der


def peer_id_of_spki(spki_der: bytes) -> str:
    """The base58 libp2p peer id of an RSA public key given as SubjectPublicKeyInfo DER."""
    return b58encode(b"\x12\x20" + hashlib.sha256(key_proto(spki_der)).digest())  # the sha2-256 multihash


@lru_cache(maxsize=4096)
def peer_id_of_key(key_b64: str) -> str | None:
    """The peer id of a base64 SPKI key, or None if it is not base64 of a plausible key."""
    der = _b64(key_b64, MAX_KEY_CHARS)
    return peer_id_of_spki(der) if der else None


class Signer:
    """A private key that signs statements as one peer id."""

    def __init__(self, private_key):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise SigningError("Potluck identities are RSA keys")
        self._key = private_key
        der = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_key = base64.b64encode(der).decode("ascii")
        self.peer_id = peer_id_of_spki(der)

    @classmethod
    def from_identity(cls, path: Path | str) -> "Signer":
        """The key of a libp2p identity file (protobuf PrivateKey {Type: RSA, Data: PKCS#1 DER})."""
        from cryptography.hazmat.primitives import serialization

        data = Path(path).read_bytes()
        fields, i = {}, 0
        try:
            while i < len(data):
                tag, i = read_varint(data, i)
                if tag & 7 == 0:
                    fields[tag >> 3], i = read_varint(data, i)
                elif tag & 7 == 2:
                    n, i = read_varint(data, i)
                    fields[tag >> 3], i = data[i: i + n], i + n
                else:
                    raise ValueError(f"unexpected wire type {tag & 7}")
            if fields.get(1, 0) != 0 or not isinstance(fields.get(2), bytes):  # key type 0 = RSA
                raise ValueError("not an RSA identity")
            key = serialization.load_der_private_key(fields[2], password=None)
        except (ValueError, IndexError, TypeError) as e:
            raise SigningError(f"{path} is not a usable identity ({e})") from None
        return cls(key)

    @classmethod
    def generate(cls, bits: int = 2048) -> "Signer":
        """A fresh key (tests and throw-away identities; a member's identity file is made by secure.create_identity)."""
        from cryptography.hazmat.primitives.asymmetric import rsa

        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    def sign(self, message: bytes) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        return base64.b64encode(self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")

    def __repr__(self) -> str:
        return f"Signer({self.peer_id[:12]}…)"


def verify(key_b64: str, message: bytes, sig_b64: str) -> bool:
    """True if `sig_b64` is the signature of `message` by the key `key_b64`. Bad input is simply False."""
    if not isinstance(key_b64, str) or not isinstance(sig_b64, str) or not isinstance(message, bytes):
        return False
    return _verify(key_b64, hashlib.sha256(message).digest(), message, sig_b64)


def _verify(key_b64: str, digest: bytes, message: bytes, sig_b64: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    if (key_b64, digest, sig_b64) in _VERIFIED:
        return True
    der, sig = _b64(key_b64, MAX_KEY_CHARS), _b64(sig_b64, MAX_SIG_CHARS)
    if not der or not sig:
        return False
    try:
        key = _load_public(der)
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        key.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        return False
    _VERIFIED.add((key_b64, digest, sig_b64))
    if len(_VERIFIED) > _VERIFY_CACHE:
        _VERIFIED.clear()
    return True


_VERIFIED: set[tuple[str, bytes, str]] = set()  # good signatures seen, so merging the same lists again is cheap


@lru_cache(maxsize=1024)
def _load_public(der: bytes):
    from cryptography.hazmat.primitives import serialization

    return serialization.load_der_public_key(der)


def _b64(text: Any, max_chars: int) -> bytes | None:
    if not isinstance(text, str) or not 0 < len(text) <= max_chars:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
