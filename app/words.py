"""Sentences for people: messages built from parts (a node's reason, then what to do) read as separate sentences,
and a pasted invite code's problem named for what it is. Pure functions, tested with tables.

An invite code cut short fails its checksum just as a typo does; `code_problem` tells the two apart from the
code's structure (core/swarm/invite.py's layout): a code whose fields run past its end lost its end, so it is
"incomplete", not "a typo".
"""

from __future__ import annotations

from potluck.core.swarm import invite as invite_codec
from potluck.core.swarm.invite import InviteError, decode_invite

INCOMPLETE = invite_codec.INCOMPLETE


def sentence(text: str) -> str:
    """`text` stripped and ending with a full stop (unless it ends with other closing punctuation)."""
    text = " ".join(text.split())
    return text if not text or text[-1] in ".!?…)”\"" else text + "."


def capitalised(text: str) -> str:
    """`text` with its first letter upper-case (the rest as it is: names and units keep their case)."""
    return text[:1].upper() + text[1:]


def sentences(*parts: str) -> str:
    """Parts joined as separate sentences: 'Could not join: the code was used' + 'Open the dashboard' ->
    'Could not join: the code was used. Open the dashboard.' Empty parts are skipped."""
    return " ".join(sentence(p) for p in parts if p and p.strip())


def code_problem(code: str) -> str:
    """Why a pasted invite code cannot be used, in words ('' when it can)."""
    try:
        decode_invite(code)
    except InviteError as exc:
        message = str(exc)
        if message.startswith(invite_codec.TYPO) and looks_cut_short(code):
            return INCOMPLETE
        return message
    return ""


def looks_cut_short(code: str) -> bool:
    """Whether the code's fields need more bytes than it has (its end was lost when it was copied)."""
    try:
        body = invite_codec._normalize(code)
    except InviteError:
        return False
    value = 0
    for char in body:
        if char not in invite_codec._DECODE:
            return False
        value = value << 5 | invite_codec._DECODE[char]
    whole_bytes = len(body) * 5 // 8
    data = (value >> (len(body) * 5 - whole_bytes * 8)).to_bytes(whole_bytes, "big")
    return _fields_end(data) > len(data) - 4  # the last 4 bytes are the CRC


def _fields_end(data: bytes) -> int:
    """Where the payload's fields end when read from `data` (at least one peer); past the end when cut short."""
    end = len(data) + 1  # "needs more than there is"
    try:
        i = 29  # version, swarm id, credential, expiry
        while data[i] & 0x80:  # max uses (LEB128)
            i += 1
        i += 1
        for _text in range(2):  # swarm name, model id
            i += 1 + data[i]
        i += 21 if data[i] == 0xFF else 1 + data[i]  # revision
        i += 1 if data[0] >= 2 else 0  # precision
        peers = 0
        while peers == 0 or i < len(data) - 4:
            tag = data[i]
            address = {1: 3, 2: 4, 3: 16}.get(tag & 0x0F)
            if address is None or tag >> 4 not in (1, 2, 3):
                return len(data) - 4  # not a peer at all: damaged, not short
            i += 1 + address + 2
            i += 32 if tag >> 4 in (1, 2) else 1 + data[i]
            peers += 1
    except IndexError:
        return end
    return i
