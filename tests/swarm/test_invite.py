"""Invite codes: round trips, length, every single-character typo, chat-client mangling, clear refusals."""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import struct
import zlib

import pytest

from potluck.core.swarm import codec
from potluck.core.swarm import invite as inv
from potluck.core.swarm.invite import Invite, InviteError, decode_invite, describe_invite, encode_invite

NOW = 1_790_000_000  # 2026-09-21
RSA_PEER = codec.b58encode(b"\x12\x20" + hashlib.sha256(b"rsa peer").digest())  # Qm... like hivemind's
RSA_PEER2 = codec.b58encode(b"\x12\x20" + hashlib.sha256(b"rsa peer 2").digest())
ED_PEER = codec.b58encode(b"\x00\x24\x08\x01\x12\x20" + hashlib.sha256(b"ed25519 key").digest())  # 12D3KooW...
RAW_PEER = codec.b58encode(b"\x01\x55" + bytes(range(20)))
COMMIT = "4f1e2d3c5b6a79880716253443526170a9b8c7d6"


def make(**changes) -> Invite:
    base = dict(
        swarm_name="Friday night",
        swarm_id="5c0ffee15a1ad000",
        model_id="meta-llama/Llama-3.1-70B-Instruct",
        model_revision=COMMIT,
        bootstrap=(f"/ip4/100.101.1.1/tcp/31337/p2p/{RSA_PEER}", f"/ip4/100.88.40.7/tcp/31337/p2p/{RSA_PEER2}"),
        credential=bytes(range(16)),
        expires_at=NOW + 7 * 86400,
        max_uses=1,
    )
    base.update(changes)
    return Invite(**base)


ROUND_TRIP_CASES = {
    "two tailnet peers": make(),
    "one peer, unlimited uses": make(bootstrap=make().bootstrap[:1], max_uses=None),
    "eight peers": make(bootstrap=tuple(f"/ip4/100.101.1.{i}/tcp/{4000 + i}/p2p/{RSA_PEER}" for i in range(1, 9))),
    "edges of the tailnet range": make(bootstrap=(f"/ip4/100.64.0.0/tcp/1/p2p/{RSA_PEER}",
                                                  f"/ip4/100.127.255.255/tcp/65535/p2p/{RSA_PEER2}")),
    "loopback and LAN addresses": make(bootstrap=(f"/ip4/127.0.0.1/tcp/5000/p2p/{RSA_PEER}",
                                                  f"/ip4/192.168.1.20/tcp/5001/p2p/{RSA_PEER2}")),
    "ipv6": make(bootstrap=(f"/ip6/fd7a:115c:a1e0::3e01:101/tcp/31337/p2p/{RSA_PEER}",)),
    "ed25519 and other peer ids": make(bootstrap=(f"/ip4/100.101.1.1/tcp/1/p2p/{ED_PEER}",
                                                  f"/ip4/100.101.1.2/tcp/2/p2p/{RAW_PEER}")),
    "branch revision": make(model_revision="main"),
    "no revision": make(model_revision=""),
    "uppercase hex is not a commit": make(model_revision=COMMIT.upper()),
    "unicode name": make(swarm_name="Café Ñandú 🍲"),
    "many uses": make(max_uses=inv.MAX_USES_LIMIT),
    "uses needing two varint bytes": make(max_uses=300),
    "far expiry": make(expires_at=2**32 - 1),
    "int8 weights": make(quant="int8"),
    "int4 weights": make(quant="int4"),
}


@pytest.mark.parametrize("invite", ROUND_TRIP_CASES.values(), ids=ROUND_TRIP_CASES.keys())
def test_round_trip(invite):
    code = encode_invite(invite)
    assert code.startswith("potluck-")
    assert set(code[len("potluck-"):]) <= set(inv._ALPHABET)
    assert decode_invite(code, now=NOW) == invite


@pytest.mark.parametrize("name, model, limit", [
    ("Friday night", "meta-llama/Llama-3.1-70B-Instruct", 304),  # the typical case: about 300 characters
    ("Friday LLM night", "meta-llama/Llama-3.1-70B-Instruct", 304),
    ("x" * 64, "y" * 96, 480),  # the longest names still fit in one chat message
])
def test_length_with_two_bootstrap_peers(name, model, limit):
    code = encode_invite(make(swarm_name=name, model_id=model))
    assert len(code) <= limit, len(code)


def test_invite_id_is_derived_from_the_credential_and_reveals_nothing():
    a, b = make(), make(credential=bytes(16))
    assert a.invite_id != b.invite_id and len(a.invite_id) == 12
    assert a.invite_id == inv.invite_id_for(a.credential)
    assert a.credential.hex() not in describe_invite(a, now=NOW)


def _mutations(code: str):
    """Every single-character substitution, insertion and deletion of `code`."""
    for i in range(len(code)):
        for c in inv._ALPHABET:
            if c != code[i]:
                yield "substitution", code[:i] + c + code[i + 1:]
        yield "deletion", code[:i] + code[i + 1:]
    for i in range(len(code) + 1):
        for c in inv._ALPHABET:
            yield "insertion", code[:i] + c + code[i:]


@pytest.mark.parametrize("invite", [make(), make(bootstrap=make().bootstrap[:1], max_uses=None, model_revision="main"),
                                    ROUND_TRIP_CASES["ed25519 and other peer ids"]], ids=["typical", "short", "mixed"])
def test_every_single_character_change_is_caught(invite):
    code = encode_invite(invite)
    tried, accepted = 0, []
    for kind, changed in _mutations(code):
        tried += 1
        try:
            decode_invite(changed, now=NOW)
        except InviteError:
            continue
        if inv._normalize(changed) != inv._normalize(code):  # a dash or prefix change that reads the same is fine
            accepted.append((kind, changed))
    assert tried > 2 * 32 * len(code)
    assert accepted == []


def test_typo_message_is_the_human_one():
    code = encode_invite(make())
    changed = code[:50] + ("0" if code[50] != "0" else "1") + code[51:]
    with pytest.raises(InviteError, match="^This code has a typo: check the characters you pasted"):
        decode_invite(changed, now=NOW)


def _chunks(s: str, n: int, sep: str) -> str:
    return sep.join(s[i:i + n] for i in range(0, len(s), n))


CODE = encode_invite(make())
MANGLED = {
    "as is": CODE,
    "line breaks every 40": _chunks(CODE, 40, "\n"),
    "windows line breaks": _chunks(CODE, 33, "\r\n"),
    "spaces and tabs": "  " + _chunks(CODE, 7, " \t") + " \n",
    "zero-width spaces": _chunks(CODE, 10, "\u200b"),
    "soft hyphens and word joiners": _chunks(CODE, 10, "\u00ad\u2060"),
    "uppercase": CODE.upper(),
    "dashes between groups": "potluck-" + _chunks(CODE[8:], 5, "-"),
    "backticks": f"`{CODE}`",
    "quoted with a full stop": f"\u201c{CODE}\u201d.",
    "angle brackets": f"<{CODE}>",
    "O for zero": CODE[:8] + CODE[8:].replace("0", "O"),
    "l and I for one": CODE[:8] + CODE[8:].replace("1", "l", 3).replace("1", "I"),
}


@pytest.mark.parametrize("text", MANGLED.values(), ids=MANGLED.keys())
def test_chat_client_mangling_is_tolerated(text):
    assert decode_invite(text, now=NOW) == make()


def _with_version(code: str, version: int) -> str:
    data = inv._b32decode(inv._normalize(code))
    payload = bytes([version]) + data[1:-4]
    return inv.PREFIX + inv._b32encode(payload + struct.pack("<I", zlib.crc32(payload)))


DEC_1_2026 = calendar.timegm((2026, 12, 1, 0, 0, 0))
BAD_CODES = [
    ("", "empty"),
    ("   \n ", "empty"),
    ("hello there", "should start with potluck-"),
    ("https://example.org/potluck-abc", "should start with potluck-"),
    ("potluck-", "typo|incomplete"),
    ("potluck-" + "0" * 20, "incomplete"),
    (CODE[:len(CODE) // 2], "typo"),
    (CODE + CODE[8:], "typo"),
    (CODE[:20] + "u" + CODE[21:], "typo.*'u'"),
    (CODE[:20] + "#" + CODE[21:], "typo"),
    (_with_version(CODE, 3), r"^This code was made by a newer Potluck \(format 3\)"),
    (_with_version(CODE, 0), "damaged"),
    (encode_invite(make(expires_at=DEC_1_2026)), "^This code has expired on 2026-12-01"),
]


@pytest.mark.parametrize("code, message", BAD_CODES)
def test_bad_codes_are_refused_clearly(code, message):
    with pytest.raises(InviteError, match=message):
        decode_invite(code, now=DEC_1_2026 + 1)


@pytest.mark.parametrize("now, expired", [(DEC_1_2026 - 1, False), (DEC_1_2026, True), (DEC_1_2026 + 86400, True)])
def test_expiry_boundary_and_show_mode(now, expired):
    code = encode_invite(make(expires_at=DEC_1_2026))
    decoded = decode_invite(code, now=now, allow_expired=True)
    assert decoded.is_expired(now) is expired
    assert ("expired on 2026-12-01" in describe_invite(decoded, now=now)) is expired
    if expired:
        with pytest.raises(InviteError):
            decode_invite(code, now=now)


def test_a_valid_crc_over_a_broken_structure_is_reported_as_damaged():
    data = inv._b32decode(inv._normalize(CODE))
    payload = data[:-4] + b"\x07"  # a trailing byte that starts an unknown peer kind
    code = inv.PREFIX + inv._b32encode(payload + struct.pack("<I", zlib.crc32(payload)))
    with pytest.raises(InviteError, match="damaged"):
        decode_invite(code, now=NOW)


BAD_FIELDS = [
    ({"swarm_name": ""}, "swarm name"),
    ({"swarm_name": "x" * 65}, "swarm name"),
    ({"swarm_name": "tab\there"}, "printable"),
    ({"swarm_id": "5C0FFEE15A1AD000"}, "swarm id"),
    ({"swarm_id": "abc"}, "swarm id"),
    ({"model_id": ""}, "model id"),
    ({"model_revision": "r" * 201}, "revision"),
    ({"bootstrap": ()}, "bootstrap"),
    ({"bootstrap": ["/ip4/100.101.1.1/tcp/1/p2p/" + RSA_PEER]}, "bootstrap"),
    ({"bootstrap": (f"/ip4/100.101.1.1/tcp/1/p2p/{RSA_PEER}",) * 9}, "bootstrap"),
    ({"bootstrap": ("/ip4/100.101.1.1/tcp/31337",)}, "not /ip4"),
    ({"bootstrap": (f"/dns4/ana.ts.net/tcp/1/p2p/{RSA_PEER}",)}, "not /ip4"),
    ({"bootstrap": (f"/ip4/100.101.1.300/tcp/1/p2p/{RSA_PEER}",)}, "bad IP"),
    ({"bootstrap": (f"/ip4/100.101.1.1/tcp/0/p2p/{RSA_PEER}",)}, "bad port"),
    ({"bootstrap": (f"/ip4/100.101.1.1/tcp/70000/p2p/{RSA_PEER}",)}, "bad port"),
    ({"bootstrap": ("/ip4/100.101.1.1/tcp/1/p2p/Qm0OIl",)}, "not /ip4"),
    ({"credential": b"short"}, "credential"),
    ({"credential": "0" * 16}, "credential"),
    ({"expires_at": 0}, "expires_at"),
    ({"expires_at": 2**32}, "expires_at"),
    ({"expires_at": 1.5e9}, "expires_at"),
    ({"max_uses": 0}, "max_uses"),
    ({"max_uses": 70000}, "max_uses"),
    ({"max_uses": True}, "max_uses"),
    ({"version": 3}, "version"),
]


@pytest.mark.parametrize("changes, message", BAD_FIELDS, ids=[str(c) for c, _ in BAD_FIELDS])
def test_invalid_invites_cannot_be_built(changes, message):
    with pytest.raises(InviteError, match=message):
        make(**changes)


def test_describe_names_what_a_friend_needs():
    text = describe_invite(make(), now=NOW)
    for needle in ("Friday night", "5c0ffee15a1ad000", "Llama-3.1-70B", COMMIT, "100.101.1.1", "1 join", "valid until"):
        assert needle in text


def test_invite_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make().max_uses = 5


def _format_1_code(invite: Invite) -> str:
    """The code a Potluck that knew format 1 wrote: no precision byte."""
    code = encode_invite(invite)
    payload = inv._b32decode(inv._normalize(code))[:-4]
    revision_end = payload.index(bytes.fromhex(invite.model_revision)) + 20
    old = bytes([1]) + payload[1:revision_end] + payload[revision_end + 1:]
    return inv.PREFIX + inv._b32encode(old + struct.pack("<I", zlib.crc32(old)))


def test_format_1_codes_still_read_as_full_precision():
    decoded = decode_invite(_format_1_code(make()), now=NOW)
    assert decoded.quant == "none" and decoded.version == 1 and decoded.bootstrap == make().bootstrap


def test_an_unknown_precision_byte_is_damage_not_a_crash():
    code = encode_invite(make(quant="int4"))
    payload = bytearray(inv._b32decode(inv._normalize(code))[:-4])
    at = payload.index(bytes.fromhex(COMMIT)) + 20
    assert payload[at] == 2
    payload[at] = 9
    bad = inv.PREFIX + inv._b32encode(bytes(payload) + struct.pack("<I", zlib.crc32(bytes(payload))))
    with pytest.raises(InviteError, match="damaged.*unknown precision 9"):
        decode_invite(bad, now=NOW)


def test_precision_is_shown_and_checked():
    assert "weights at int8" in describe_invite(make(quant="int8"), now=NOW)
    with pytest.raises(InviteError, match="quant"):
        make(quant="int3")
