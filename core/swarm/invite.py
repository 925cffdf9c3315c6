"""Invite codes: everything a friend needs to join a swarm, in one line that survives a chat client.

A code looks like `potluck-` followed by ~290 characters of lowercase Crockford base32 (no i, l, o, u; when
reading, `o` counts as 0 and `i`/`l` as 1, case does not matter, and spaces, line breaks, dashes and surrounding
quotes or brackets are ignored). The characters carry a binary payload:

    format version (1 byte) | swarm id (8) | join credential (16) | expires_at (uint32, unix seconds)
    | max uses (LEB128 varint, 0 = unlimited) | swarm name, model id (1-byte length + UTF-8)
    | model revision (a 40-hex commit as 20 raw bytes after 0xFF, else 1-byte length + UTF-8)
    | weight precision (1 byte: 0 none, 1 int8, 2 int4; format 2 on; format 1 codes mean none)
    | bootstrap peers, each: tag (peer-id kind << 4 | address kind), address, port (uint16), peer-id bytes
    | CRC-32 of everything before it, little-endian

The CRC is the envelope's contract for every format: it is checked before the version, so a typo is reported as a
typo and a newer format as a newer format. Appended little-endian, the CRC makes payload+CRC a CRC-32 codeword
(zlib's CRC-32 is bit-reflected). One changed character flips bits inside at most two adjacent bytes, a burst of
at most 16 bits, and CRC-32 detects every burst of up to 32 bits; so every single-character substitution is
caught. An inserted or dropped character shifts everything after it by 5 bits: the length no longer matches the
padding, the structure, or the CRC (a 2^-32 chance at worst). tests/swarm/test_invite.py tries every
single-character substitution, insertion and deletion of real codes.

Pure standard library: the Qt GUI imports this module (no hivemind, no torch).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import struct
import time
import unicodedata
import zlib
from dataclasses import dataclass

from potluck.core.errors import PotluckError
from potluck.core.swarm.codec import b58decode, b58encode, read_varint, varint

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
PRECISIONS = ("none", "int8", "int4")  # the swarm's weight precision, by its byte in the code
PREFIX = "potluck-"
SWARM_ID_BYTES = 8  # random; names the swarm in the store, the keyring and the DHT
CREDENTIAL_BYTES = 16  # random; the inviter keeps only its SHA-256 and redeems it once per use
MAX_BOOTSTRAP_PEERS = 8
MAX_USES_LIMIT = 65_535

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase
_DECODE = {c: i for i, c in enumerate(_ALPHABET)} | {"o": 0, "i": 1, "l": 1}
_TAILNET = ipaddress.IPv4Network("100.64.0.0/10")
_SHA256_MH = b"\x12\x20"  # multihash header of an RSA (hivemind) peer id
_ED25519_MH = b"\x00\x24\x08\x01\x12\x20"  # identity multihash of an Ed25519 public key
_PEER_SHA256, _PEER_ED25519, _PEER_RAW = 1, 2, 3
_ADDR_TAILNET, _ADDR_IPV4, _ADDR_IPV6 = 1, 2, 3
_MADDR = re.compile(r"/(ip4|ip6)/([^/]+)/tcp/(\d{1,5})/(?:p2p|ipfs)/([1-9A-HJ-NP-Za-km-z]{10,100})")
_SURROUNDING = "`'\"<>()[]{}.,;:!?\u201c\u201d\u2018\u2019"
_HEX40 = re.compile(r"[0-9a-f]{40}")


class InviteError(PotluckError, ValueError):
    """A code cannot be used; str(error) is a sentence meant for the user."""


TYPO = "This code has a typo: check the characters you pasted"
INCOMPLETE = ("This code is incomplete: its end is missing. Copy the whole code again (it is about 300 characters "
              "long and may span several lines in a chat)")


@dataclass(frozen=True)
class Invite:
    swarm_name: str  # what the creator called the swarm, shown to the friend
    swarm_id: str  # 16 lowercase hex characters
    model_id: str  # Hugging Face repo id, e.g. "meta-llama/Llama-3.1-70B-Instruct"
    model_revision: str  # commit hash or branch; "" = the repo's default branch
    bootstrap: tuple[str, ...]  # multiaddrs /ip4/<tailnet ip>/tcp/<port>/p2p/<peer id> of peers to join through
    credential: bytes  # one-time join credential, redeemed at the inviter
    expires_at: int  # unix seconds after which the code is refused
    max_uses: int | None = None  # joins the inviter allows with this code; None = until it expires
    quant: str = "none"  # the swarm's weight precision: none, int8 or int4
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _need(isinstance(self.swarm_name, str) and 0 < len(self.swarm_name) <= 64, "swarm name: 1 to 64 characters")
        _need(len(self.swarm_name.encode()) <= 200 and self.swarm_name.isprintable(), "swarm name: printable text")
        _need(isinstance(self.swarm_id, str) and re.fullmatch(r"[0-9a-f]{16}", self.swarm_id) is not None,
              "swarm id: 16 lowercase hex characters")
        _need(isinstance(self.model_id, str) and 0 < len(self.model_id.encode()) <= 200 and self.model_id.isprintable(),
              "model id: 1 to 200 printable bytes")
        _need(isinstance(self.model_revision, str) and len(self.model_revision.encode()) <= 200
              and self.model_revision.isprintable(), "model revision: at most 200 printable bytes")
        _need(isinstance(self.bootstrap, tuple) and 0 < len(self.bootstrap) <= MAX_BOOTSTRAP_PEERS,
              f"bootstrap: 1 to {MAX_BOOTSTRAP_PEERS} multiaddrs")
        for maddr in self.bootstrap:
            parse_multiaddr(maddr)
        _need(isinstance(self.credential, bytes) and len(self.credential) == CREDENTIAL_BYTES,
              f"credential: {CREDENTIAL_BYTES} bytes")
        _need(_is_int(self.expires_at) and 0 < self.expires_at < 2**32, "expires_at: unix seconds before 2106")
        _need(self.max_uses is None or (_is_int(self.max_uses) and 1 <= self.max_uses <= MAX_USES_LIMIT),
              f"max_uses: None or 1 to {MAX_USES_LIMIT}")
        _need(self.quant in PRECISIONS, f"quant: one of {', '.join(PRECISIONS)}")
        _need(self.version in READABLE_VERSIONS, f"version: format {self.version} is unknown")

    @property
    def invite_id(self) -> str:
        """Public name of this code (12 hex characters), derived from the credential; safe to log and show."""
        return invite_id_for(self.credential)

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


def invite_id_for(credential: bytes) -> str:
    return hashlib.sha256(b"potluck invite id\x00" + credential).hexdigest()[:12]


def encode_invite(invite: Invite) -> str:
    """The code to paste in a chat: `potluck-` + base32 of the payload and its CRC-32."""
    out = bytearray([FORMAT_VERSION])  # always the newest format
    out += bytes.fromhex(invite.swarm_id) + invite.credential + struct.pack(">I", invite.expires_at)
    out += varint(invite.max_uses or 0)
    out += _text(invite.swarm_name) + _text(invite.model_id)
    rev = invite.model_revision
    out += b"\xff" + bytes.fromhex(rev) if _HEX40.fullmatch(rev) else _text(rev)
    out += bytes([PRECISIONS.index(invite.quant)])
    for maddr in invite.bootstrap:
        out += _pack_peer(*parse_multiaddr(maddr))
    out += struct.pack("<I", zlib.crc32(out))
    return PREFIX + _b32encode(bytes(out))


def decode_invite(code: str, now: float | None = None, *, allow_expired: bool = False) -> Invite:
    """Check and unpack a pasted code. Raises InviteError with a message for the user.

    `allow_expired=True` returns expired codes too (for `potluck invite show`); check `is_expired` then.
    """
    body = _normalize(code)
    data = _b32decode(body)
    if len(data) < 40:
        raise InviteError(INCOMPLETE)
    payload, crc = data[:-4], struct.unpack("<I", data[-4:])[0]
    if zlib.crc32(payload) != crc:
        raise InviteError(TYPO)
    if payload[0] > FORMAT_VERSION:
        raise InviteError(f"This code was made by a newer Potluck (format {payload[0]}): update Potluck to use it")
    if payload[0] not in READABLE_VERSIONS:
        raise InviteError(f"This code is damaged: unknown format {payload[0]}")
    try:
        invite = _parse(payload)
    except (InviteError, struct.error, IndexError, UnicodeDecodeError, ValueError) as e:
        raise InviteError(f"This code is damaged ({e}): ask for a new one") from None
    if not allow_expired and invite.is_expired(now):
        raise InviteError(f"This code has expired on {format_utc(invite.expires_at)}: ask your friend for a new one")
    return invite


def describe_invite(invite: Invite, now: float | None = None) -> str:
    """Human summary for `potluck invite show`; contains nothing secret."""
    now = time.time() if now is None else now
    state = f"expired on {format_utc(invite.expires_at)}" if invite.is_expired(now) else \
        f"valid until {format_utc(invite.expires_at)}"
    uses = "until it expires" if invite.max_uses is None else f"for {invite.max_uses} join(s)"
    lines = [
        f"Swarm:     {invite.swarm_name} (id {invite.swarm_id})",
        f"Model:     {invite.model_id}" + (f" @ {invite.model_revision}" if invite.model_revision else "")
        + (f", weights at {invite.quant}" if invite.quant != "none" else ""),
        f"Code:      {invite.invite_id}, {state}, {uses}",
        "Join via:  " + "\n           ".join(invite.bootstrap),
    ]
    return "\n".join(lines)


def format_utc(unix_seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(unix_seconds))


def parse_multiaddr(maddr: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int, str]:
    """`/ip4/A/tcp/P/p2p/ID` (or /ip6/) -> (address, port, base58 peer id). Raises InviteError."""
    m = _MADDR.fullmatch(maddr) if isinstance(maddr, str) else None
    if m is None:
        raise InviteError(f"bootstrap address {maddr!r} is not /ip4/<address>/tcp/<port>/p2p/<peer id>")
    family, host, port, peer_id = m.groups()
    try:
        addr = ipaddress.IPv4Address(host) if family == "ip4" else ipaddress.IPv6Address(host)
    except ValueError:
        raise InviteError(f"bootstrap address {maddr!r} has a bad IP address") from None
    if not 0 < int(port) < 65536:
        raise InviteError(f"bootstrap address {maddr!r} has a bad port")
    if not 0 < len(b58decode(peer_id)) <= 64:
        raise InviteError(f"bootstrap address {maddr!r} has a bad peer id")
    return addr, int(port), peer_id


def _parse(p: bytes) -> Invite:
    swarm_id = p[1:9].hex()
    credential = p[9:25]
    (expires_at,) = struct.unpack(">I", p[25:29])
    max_uses, i = _read_varint(p, 29)
    name, i = _read_text(p, i)
    model_id, i = _read_text(p, i)
    if p[i] == 0xFF:
        revision, i = p[i + 1 : i + 21].hex(), i + 21
        _need(len(revision) == 40, "truncated revision")
    else:
        revision, i = _read_text(p, i)
    quant = "none"
    if p[0] >= 2:
        _need(p[i] < len(PRECISIONS), f"unknown precision {p[i]}")
        quant, i = PRECISIONS[p[i]], i + 1
    peers = []
    while i < len(p):
        maddr, i = _unpack_peer(p, i)
        peers.append(maddr)
    return Invite(name, swarm_id, model_id, revision, tuple(peers), credential, expires_at, max_uses or None, quant,
                  version=p[0])


def _pack_peer(addr, port: int, peer_id: str) -> bytes:
    raw = b58decode(peer_id)
    if len(raw) == 34 and raw.startswith(_SHA256_MH):
        kind, pid = _PEER_SHA256, raw[2:]
    elif len(raw) == 38 and raw.startswith(_ED25519_MH):
        kind, pid = _PEER_ED25519, raw[6:]
    else:
        kind, pid = _PEER_RAW, bytes([len(raw)]) + raw
    if addr.version == 6:
        akind, packed = _ADDR_IPV6, addr.packed
    elif addr in _TAILNET:  # 22 significant bits: 3 bytes
        akind, packed = _ADDR_TAILNET, (int(addr) - int(_TAILNET.network_address)).to_bytes(3, "big")
    else:
        akind, packed = _ADDR_IPV4, addr.packed
    return bytes([kind << 4 | akind]) + packed + struct.pack(">H", port) + pid


def _unpack_peer(p: bytes, i: int) -> tuple[str, int]:
    kind, akind = p[i] >> 4, p[i] & 0x0F
    i += 1
    if akind == _ADDR_TAILNET:
        offset = int.from_bytes(p[i : i + 3], "big")
        _need(len(p) >= i + 3 and offset < _TAILNET.num_addresses, "bad tailnet address")
        addr, i = f"/ip4/{_TAILNET.network_address + offset}", i + 3
    elif akind == _ADDR_IPV4:
        addr, i = f"/ip4/{ipaddress.IPv4Address(p[i : i + 4])}", i + 4
    elif akind == _ADDR_IPV6:
        addr, i = f"/ip6/{ipaddress.IPv6Address(p[i : i + 16])}", i + 16
    else:
        raise InviteError(f"unknown address kind {akind}")
    (port,) = struct.unpack(">H", p[i : i + 2])
    i += 2
    if kind == _PEER_SHA256:
        raw, i = _SHA256_MH + p[i : i + 32], i + 32
    elif kind == _PEER_ED25519:
        raw, i = _ED25519_MH + p[i : i + 32], i + 32
    elif kind == _PEER_RAW:
        raw, i = p[i + 1 : i + 1 + p[i]], i + 1 + p[i]
    else:
        raise InviteError(f"unknown peer id kind {kind}")
    _need(i <= len(p), "truncated peer id")
    return f"{addr}/tcp/{port}/p2p/{b58encode(raw)}", i


def _normalize(code: str) -> str:
    if not isinstance(code, str):
        raise InviteError("An invite code is text that starts with potluck-")
    kept = "".join(c for c in code if not c.isspace() and unicodedata.category(c) != "Cf")  # zero-width etc.
    kept = kept.strip(_SURROUNDING).lower()
    if not kept:
        raise InviteError("The invite code is empty: paste the whole code your friend sent (it starts with potluck-)")
    if not kept.startswith(PREFIX[:-1]):
        raise InviteError(f"This is not a Potluck invite code: it should start with {PREFIX}")
    return kept[len(PREFIX) - 1 :].replace("-", "")


def _b32encode(data: bytes) -> str:
    bits = len(data) * 8
    n = int.from_bytes(data, "big") << (-bits % 5)
    chars = (bits + 4) // 5
    return "".join(_ALPHABET[(n >> (5 * (chars - 1 - k))) & 31] for k in range(chars))


def _b32decode(body: str) -> bytes:
    n = 0
    for pos, c in enumerate(body):
        if c not in _DECODE:
            raise InviteError(f"{TYPO} ('{c}' at position {pos + 1 + len(PREFIX)} is not used in codes)")
        n = n << 5 | _DECODE[c]
    pad = len(body) * 5 % 8
    if pad >= 5 or n & ((1 << pad) - 1):  # no byte count encodes to this many characters, or stray bits
        raise InviteError(TYPO)
    return (n >> pad).to_bytes(len(body) * 5 // 8, "big")


def _read_varint(p: bytes, i: int) -> tuple[int, int]:
    try:
        return read_varint(p, i, max_bits=21)
    except ValueError:
        raise InviteError("max uses out of range") from None


def _text(s: str) -> bytes:
    raw = s.encode("utf-8")
    return bytes([len(raw)]) + raw


def _read_text(p: bytes, i: int) -> tuple[str, int]:
    n = p[i]
    _need(n != 0xFF and i + 1 + n <= len(p), "truncated text")
    return p[i + 1 : i + 1 + n].decode("utf-8"), i + 1 + n


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise InviteError(message)
