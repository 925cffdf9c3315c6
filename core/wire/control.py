"""Typed control messages of the data plane: what a client, its servers and their neighbours say besides tensors.

Each message is a frozen dataclass with its `OP`; it travels as one JSON frame ``{"op": …, fields…}``
(core/wire/framing.py) built and checked by core/typed_json.py: unknown fields are ignored, a missing or mistyped
field or an out-of-range value is a `WireError` naming the field. Error codes and drain reasons are enums whose
values are the protocol: renaming a Python class never changes what travels. Standard library only.

    client → server   Open, Close, HistoryRequest, SetNext, SetPrev, Ping
    server → client   Opened, ErrorReply, DrainNotice, HistoryEnd, Relinked, Pong
    server → server   PushOpen (the first frame of a push stream; tensors follow)
"""

from __future__ import annotations

import enum
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from potluck.core import typed_json
from potluck.core.wire.framing import KIND_JSON, MAX_JSON_BYTES, WireError, parse_json_frame

MAX_SESSION_ID_CHARS = 64
MAX_PEER_ID_CHARS = 128
MAX_ADDRS = 16  # multiaddrs a next hop may name
MAX_ADDR_CHARS = 256
MAX_U32 = 2**32 - 1


class Op(str, enum.Enum):
    OPEN = "open"
    OPENED = "opened"
    ERROR = "error"
    CLOSE = "close"
    HISTORY = "history"
    HISTORY_END = "history_end"
    SET_NEXT = "set_next"
    SET_PREV = "set_prev"
    RELINKED = "relinked"
    DRAIN = "drain"
    PUSH = "push"
    PING = "ping"
    PONG = "pong"


class ErrorCode(str, enum.Enum):
    NOT_A_MEMBER = "not_a_member"  # the caller is not an active member of this private swarm
    BAD_MESSAGE = "bad_message"  # malformed, out of range or unexpected here
    REFUSED = "refused"  # a valid request this server will not do (wrong model, blocks not hosted, draining, …)
    CACHE_FULL = "cache_full"  # the attention-cache budget cannot take this session
    OPEN_TIMEOUT = "open_timeout"  # no open message came in time
    IDLE_TIMEOUT = "idle_timeout"  # the session was idle too long and is closed
    PUSH_FAILED = "push_failed"  # the next server could not be reached; `blame` names it
    NO_SUCH_SESSION = "no_such_session"  # a push for a session that is not open here (or not from this pusher)


class DrainReason(str, enum.Enum):
    LEAVING = "leaving"  # the server stops serving (pause, shutdown): move every session elsewhere
    SHRINKING = "shrinking"  # low memory: it keeps a smaller range, which may still cover part of a session
    MOVING = "moving"  # rebalancing: it now hosts other blocks


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise WireError(message)


def _u32(name: str, value: int) -> None:
    _check(0 <= value <= MAX_U32, f"{name} must be an unsigned 32-bit integer, got {value}")


def _text(name: str, value: str, max_chars: int, *, empty: bool = False) -> None:
    _check((empty or value) and len(value) <= max_chars, f"{name} must be 1-{max_chars} characters")


@dataclass(frozen=True)
class NextHop:
    """Where a session pushes its outputs: the next server, the session id the client opened there, its addresses."""

    peer_id: str
    session_id: str
    addrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _text("next.peer_id", self.peer_id, MAX_PEER_ID_CHARS)
        _text("next.session_id", self.session_id, MAX_SESSION_ID_CHARS)
        _check(len(self.addrs) <= MAX_ADDRS and all(0 < len(a) <= MAX_ADDR_CHARS for a in self.addrs),
               f"next.addrs must be at most {MAX_ADDRS} multiaddrs")


@dataclass(frozen=True)
class Open:
    OP: ClassVar[Op] = Op.OPEN
    session_id: str
    model: str
    start: int  # first block, inclusive
    end: int  # one past the last block
    max_length: int  # the most tokens the session will hold
    next: NextHop | None = None  # push outputs there (None: return them to the client)
    prev_peer: str | None = None  # the only peer allowed to push into this session

    def __post_init__(self) -> None:
        _text("session_id", self.session_id, MAX_SESSION_ID_CHARS)
        _text("model", self.model, 256)
        _check(0 <= self.start < self.end <= MAX_U32, f"bad block range {self.start}:{self.end}")
        _check(1 <= self.max_length <= MAX_U32, "max_length must be at least 1")
        _check(self.prev_peer is None or 0 < len(self.prev_peer) <= MAX_PEER_ID_CHARS, "bad prev_peer")


@dataclass(frozen=True)
class Opened:
    OP: ClassVar[Op] = Op.OPENED
    dtype: str  # what the server's blocks compute in
    position: int = 0


@dataclass(frozen=True)
class ErrorReply:
    OP: ClassVar[Op] = Op.ERROR
    message: str  # for the user, plain words
    code: ErrorCode
    step_id: int | None = None  # the step it concerns; None: the session or the stream
    blame: str | None = None  # the peer at fault when it is not the sender (a push target that did not answer)


@dataclass(frozen=True)
class Close:
    OP: ClassVar[Op] = Op.CLOSE


@dataclass(frozen=True)
class HistoryRequest:
    """Ask for the outputs of positions [0, upto): the replacement of the next server replays them."""

    OP: ClassVar[Op] = Op.HISTORY
    upto: int
    request_id: int  # tags the reply's step frames: a late output of an abandoned step is never taken for history

    def __post_init__(self) -> None:
        _u32("upto", self.upto)
        _u32("request_id", self.request_id)


@dataclass(frozen=True)
class HistoryEnd:
    OP: ClassVar[Op] = Op.HISTORY_END
    upto: int
    request_id: int


@dataclass(frozen=True)
class SetNext:
    OP: ClassVar[Op] = Op.SET_NEXT
    next: NextHop | None


@dataclass(frozen=True)
class SetPrev:
    OP: ClassVar[Op] = Op.SET_PREV
    prev_peer: str

    def __post_init__(self) -> None:
        _text("prev_peer", self.prev_peer, MAX_PEER_ID_CHARS)


@dataclass(frozen=True)
class Relinked:
    OP: ClassVar[Op] = Op.RELINKED


@dataclass(frozen=True)
class DrainNotice:
    OP: ClassVar[Op] = Op.DRAIN
    reason: DrainReason
    message: str = ""


@dataclass(frozen=True)
class PushOpen:
    OP: ClassVar[Op] = Op.PUSH
    session_id: str

    def __post_init__(self) -> None:
        _text("session_id", self.session_id, MAX_SESSION_ID_CHARS)


@dataclass(frozen=True)
class Ping:
    OP: ClassVar[Op] = Op.PING


@dataclass(frozen=True)
class Pong:
    OP: ClassVar[Op] = Op.PONG
    time: float  # the server's wall clock, seconds since the epoch
    record: dict[str, Any] = field(default_factory=dict)  # its ServerRecord, as announced
    stats: dict[str, Any] = field(default_factory=dict)  # its byte and token counters


ControlMessage = Union[Open, Opened, ErrorReply, Close, HistoryRequest, HistoryEnd, SetNext, SetPrev, Relinked,
                       DrainNotice, PushOpen, Ping, Pong]
MESSAGE_CLASSES: dict[Op, type] = {cls.OP: cls for cls in typing.get_args(ControlMessage)}


def encode(message: ControlMessage) -> bytes:
    """The JSON frame body of a control message."""
    op = getattr(type(message), "OP", None)
    if MESSAGE_CLASSES.get(op) is not type(message):
        raise TypeError(f"not a control message: {message!r}")
    return KIND_JSON + typed_json.dumps({"op": op.value, **typed_json.to_json(message)}).encode()


def decode(body: bytes) -> ControlMessage:
    """The control message in a JSON frame body. Raises WireError saying what is wrong."""
    data = parse_json_frame(body, MAX_JSON_BYTES)
    op_value = data.get("op")
    _check(isinstance(op_value, str), "control message must be an object with an 'op'")
    try:
        op = Op(op_value)
    except ValueError:
        raise WireError(f"unknown op {typed_json.preview(op_value, 40)!r}") from None
    fields = {k: v for k, v in data.items() if k != "op"}
    try:
        return typed_json.build(MESSAGE_CLASSES[op], fields, op.value)
    except WireError:
        raise
    except typed_json.TypedJsonError as exc:
        raise WireError(str(exc)) from None
