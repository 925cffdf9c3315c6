"""The GUI ↔ node protocol: typed messages sent as JSON lines over the node process's stdin/stdout.

Both sides import this module; it uses the standard library only (no Qt, no torch), so the GUI can import it.

Wire format: one JSON object per line, UTF-8, ASCII-escaped (a line never contains a raw newline). Every object
carries ``"kind"`` (a `Kind` value) and ``"v"`` (`PROTOCOL_VERSION`). Fields a reader does not know are ignored, so
a newer peer may add fields without bumping ``v``; ``v`` changes only when an existing field changes meaning.

Commands go GUI → node (start, pause, resume, drain, shutdown, generate, cancel, set_config, refresh, and the
swarm page's swarm_refresh, invite_create, invite_cancel, revoke, leave, join, switch). Events go node → GUI
(hello, state, sizing, stats, token, done, alert, error, log, and swarm, invite, swarm_result). The swarm page's
fields live in core/protocol_swarm.py; each gets its kind here. `decode_command` and `decode_event` check the
direction as well as the shape. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from potluck.core import protocol_desktop as dk
from potluck.core import protocol_swarm as sw
from potluck.core import typed_json

PROTOCOL_VERSION = 1
MAX_LINE_CHARS = 4 * 1024 * 1024  # a longer line is refused (a runaway writer must not eat the reader's memory)
MAX_NEW_TOKENS_LIMIT = 32_768  # largest max_new_tokens a generate command may ask for


class ProtocolError(typed_json.TypedJsonError):
    """A line is not a valid message of this protocol; the text says what is wrong and where."""


class Kind(str, enum.Enum):
    # commands, GUI -> node
    START = "start"  # load blocks and start serving
    PAUSE = "pause"  # drain first, then stop serving; the process stays up with weights freed or kept warm
    RESUME = "resume"  # serve again after pause
    DRAIN = "drain"  # accept no new sessions, finish the running ones, keep serving them
    SHUTDOWN = "shutdown"  # drain briefly, announce offline, exit the process
    GENERATE = "generate"  # run one chat reply through the swarm; tokens stream back
    CANCEL = "cancel"  # stop a running generate
    SET_CONFIG = "set_config"  # change settings (model, memory cap, ...)
    REFRESH = "refresh"  # send a stats event now
    SWARM_REFRESH = "swarm_refresh"  # send a swarm event now (members, invites, known swarms)
    INVITE_CREATE = "invite_create"  # make an invite code
    INVITE_CANCEL = "invite_cancel"  # a code made here stops working
    REVOKE = "revoke"  # remove a member for good
    LEAVE = "leave"  # stop serving and forget the swarm
    JOIN = "join"  # join another swarm with an invite code
    SWITCH = "switch"  # serve in another swarm this PC belongs to
    # events, node -> GUI
    HELLO = "hello"  # first line the node writes, before any heavy import
    STATE = "state"  # the node's lifecycle state changed
    SIZING = "sizing"  # how many blocks this PC hosts, and why
    STATS = "stats"  # this PC's contribution and the swarm's health
    TOKEN = "token"  # one generated token of a request
    DONE = "done"  # a request finished
    ALERT = "alert"  # something the owner should know (a block lost its last server)
    ERROR = "error"  # a command or a request failed
    LOG = "log"  # a log line for the GUI's log view
    SWARM = "swarm"  # the current swarm as this node sees it
    INVITE = "invite"  # the code an invite_create made
    SWARM_RESULT = "swarm_result"  # how a swarm command ended
    PROGRESS = "progress"  # downloading and loading the model, in bytes and blocks
    HISTORY = "history"  # this PC's totals per day, kept across restarts

    @property
    def is_command(self) -> bool:
        return self in _COMMAND_KINDS


_COMMAND_KINDS = frozenset(
    {Kind.START, Kind.PAUSE, Kind.RESUME, Kind.DRAIN, Kind.SHUTDOWN, Kind.GENERATE, Kind.CANCEL, Kind.SET_CONFIG, Kind.REFRESH,
     Kind.SWARM_REFRESH, Kind.INVITE_CREATE, Kind.INVITE_CANCEL, Kind.REVOKE, Kind.LEAVE, Kind.JOIN, Kind.SWITCH}
)


class NodeState(str, enum.Enum):
    """The one lifecycle enum, shared by the node (what it reports) and the GUI's process owner."""

    STOPPED = "stopped"  # not serving (process up and idle, or not running at all)
    STARTING = "starting"  # launching, loading weights, joining the swarm
    SERVING = "serving"  # hosting blocks, accepting sessions
    PAUSED = "paused"  # not serving on the owner's request; resumes warm
    DRAINING = "draining"  # finishing running sessions, accepting no new ones
    STOPPING = "stopping"  # shutting down
    FAILED = "failed"  # stopped by an error; `detail` says which


class AlertLevel(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"  # e.g. a block is down to one replica
    CRITICAL = "critical"  # e.g. a block has no server left: the swarm cannot answer


class StopReason(str, enum.Enum):
    """Why a generation ended: the client's GenerationResult, the node's `Done` event and the CLI share it."""

    EOS = "eos"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"
    CANCELLED = "cancelled"
    ERROR = "error"


CHAT_ROLES = frozenset({"system", "user", "assistant"})
SPECULATIVE_MODES = frozenset({"lookup", "off"})  # Generate.speculative


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ProtocolError(message)  # a TypedJsonError: typed_json.build adds the field's path


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        _check(value >= 0, f"{name} must be >= 0, got {value}")


# ---------------------------------------------------------------------------------------------- nested records


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system | user | assistant
    content: str

    def __post_init__(self) -> None:
        _check(self.role in CHAT_ROLES, f"role must be one of {sorted(CHAT_ROLES)}, got {self.role!r}")


@dataclass(frozen=True)
class Member:
    peer_id: str
    name: str  # friendly name the owner chose
    state: str  # the server's swarm state: joining | online | draining | offline (newer peers may add more)
    start_block: int  # first hosted block, inclusive
    end_block: int  # one past the last hosted block (equal to start_block: hosts nothing)
    online: bool
    last_seen: float = 0.0  # unix seconds this member was last seen online (now while online; 0 = never seen)
    suspect: bool = False  # this PC's spot checks caught its server computing wrong (core/client/suspects.py)

    def __post_init__(self) -> None:
        _check(0 <= self.start_block <= self.end_block, f"bad block range {self.start_block}:{self.end_block}")
        _check(self.last_seen >= 0, "last_seen must be >= 0")


@dataclass(frozen=True)
class RouteHop:
    peer_id: str
    name: str
    start_block: int
    end_block: int

    def __post_init__(self) -> None:
        _check(0 <= self.start_block <= self.end_block, f"bad block range {self.start_block}:{self.end_block}")


# ---------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class _NoFields:
    """Base of the commands that carry nothing but their kind."""

    KIND: ClassVar[Kind]


class Start(_NoFields):
    KIND = Kind.START


class Pause(_NoFields):
    KIND = Kind.PAUSE


class Resume(_NoFields):
    KIND = Kind.RESUME


class Drain(_NoFields):
    KIND = Kind.DRAIN


class Shutdown(_NoFields):
    KIND = Kind.SHUTDOWN


class Refresh(_NoFields):
    KIND = Kind.REFRESH


@dataclass(frozen=True)
class Generate:
    """Exactly one of `messages` (a chat; the node applies the model's chat template) or `prompt` (raw text)."""

    KIND: ClassVar[Kind] = Kind.GENERATE
    request_id: str
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.9  # nucleus mass kept, in (0, 1]
    top_k: int = 50  # 0 means no top-k cut
    repetition_penalty: float = 1.0  # 1 means none
    seed: int | None = None  # None: a fresh random seed
    speculative: str = "lookup"  # "lookup": guess tokens from the conversation, check them in one pass; or "off"
    private: bool = False  # keep the first and last blocks on this PC (friends see no tokens or logits)

    def __post_init__(self) -> None:
        _check(bool(self.request_id), "request_id must not be empty")
        _check(self.speculative in SPECULATIVE_MODES, f"speculative must be one of {sorted(SPECULATIVE_MODES)}")
        _check((self.messages is None) != (self.prompt is None), "give exactly one of messages or prompt")
        _check(self.messages is None or len(self.messages) > 0, "messages must not be empty")
        _check(1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT, f"max_new_tokens must be in 1..{MAX_NEW_TOKENS_LIMIT}")
        _check(self.temperature >= 0, "temperature must be >= 0")
        _check(0 < self.top_p <= 1, "top_p must be in (0, 1]")
        _check(self.top_k >= 0, "top_k must be >= 0")
        _check(self.repetition_penalty > 0, "repetition_penalty must be > 0")
        _check(self.seed is None or self.seed >= 0, "seed must be >= 0")


@dataclass(frozen=True)
class Cancel:
    KIND: ClassVar[Kind] = Kind.CANCEL
    request_id: str


@dataclass(frozen=True)
class SetConfig:
    """Setting names and JSON values, e.g. {"model": "org/name", "memory_cap_bytes": 8e9}."""

    KIND: ClassVar[Kind] = Kind.SET_CONFIG
    values: dict[str, Any]


# ---------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Hello:
    KIND: ClassVar[Kind] = Kind.HELLO
    version: str  # Potluck version of the node
    pid: int  # the node process's id


@dataclass(frozen=True)
class State:
    KIND: ClassVar[Kind] = Kind.STATE
    state: NodeState
    detail: str = ""  # plain words for the owner ("Loading blocks 12–23", "Out of memory while loading")


@dataclass(frozen=True)
class Sizing:
    KIND: ClassVar[Kind] = Kind.SIZING
    num_blocks: int
    start_block: int
    end_block: int
    total_blocks: int
    explanation: str  # plain words: why this many blocks
    numbers: dict[str, Any] = field(default_factory=dict)  # the figures behind it, units in the names

    def __post_init__(self) -> None:
        _check_non_negative(num_blocks=self.num_blocks, total_blocks=self.total_blocks)
        _check(0 <= self.start_block <= self.end_block <= self.total_blocks, "block range must lie in 0..total_blocks")


@dataclass(frozen=True)
class Stats:
    KIND: ClassVar[Kind] = Kind.STATS
    start_block: int = 0  # hosted blocks [start_block, end_block); equal: none
    end_block: int = 0
    total_blocks: int = 0
    tokens_served: int = 0  # tokens this PC's blocks processed for anyone
    sessions_served: int = 0
    active_sessions: int = 0
    uptime_seconds: float = 0.0  # time spent serving since the node started
    bytes_up: int = 0
    bytes_down: int = 0
    memory_used_bytes: int = 0
    memory_free_bytes: int = 0
    throughput_tokens_per_second: float = 0.0
    tokens_used: int = 0  # tokens this PC's own chats generated through the swarm
    members: tuple[Member, ...] = ()
    coverage: tuple[int, ...] = ()  # servers per block, one entry per block of the model
    peer_id: str = ""  # this PC's peer id, to tell it apart in `members`
    api_url: str = ""  # the OpenAI-compatible API for apps on this PC (http://127.0.0.1:PORT/v1); "" while off
    tokens_for_others: int = 0  # of tokens_served, those for other members' chats: what "you gave" counts
    served_tokens_per_second: float = 0.0  # tokens this PC's blocks processed per second, over the last minute
    memory_blocks_bytes: int = 0  # of memory_used_bytes, the hosted blocks' weights (0 while not serving)
    memory_chat_bytes: int = 0  # of memory_used_bytes, the chat's own model parts (embeddings, output; after a chat)
    month_bytes_up: int = 0  # sent this calendar month (for the monthly upload cap)

    def __post_init__(self) -> None:
        _check(0 <= self.start_block <= self.end_block, "block range must have start_block <= end_block")
        _check_non_negative(
            tokens_served=self.tokens_served, sessions_served=self.sessions_served, active_sessions=self.active_sessions,
            uptime_seconds=self.uptime_seconds, bytes_up=self.bytes_up, bytes_down=self.bytes_down,
            memory_used_bytes=self.memory_used_bytes, memory_free_bytes=self.memory_free_bytes,
            throughput_tokens_per_second=self.throughput_tokens_per_second, tokens_used=self.tokens_used,
            tokens_for_others=self.tokens_for_others, served_tokens_per_second=self.served_tokens_per_second,
            memory_blocks_bytes=self.memory_blocks_bytes, month_bytes_up=self.month_bytes_up,
            memory_chat_bytes=self.memory_chat_bytes,
        )
        _check(all(c >= 0 for c in self.coverage), "coverage counts must be >= 0")


@dataclass(frozen=True)
class Token:
    KIND: ClassVar[Kind] = Kind.TOKEN
    request_id: str
    text: str  # the text this token adds to the reply (may be empty while a multi-byte character is incomplete)
    token_id: int


@dataclass(frozen=True)
class Done:
    KIND: ClassVar[Kind] = Kind.DONE
    request_id: str
    text: str  # the whole reply
    token_count: int
    tokens_per_second: float
    route: tuple[RouteHop, ...] = ()  # which PCs served which blocks, in order
    stop_reason: StopReason = StopReason.EOS


@dataclass(frozen=True)
class Alert:
    KIND: ClassVar[Kind] = Kind.ALERT
    level: AlertLevel
    text: str  # plain words ("Block 12 has no server left")
    blocks: tuple[int, ...] = ()  # the blocks concerned, if any


@dataclass(frozen=True)
class Error:
    KIND: ClassVar[Kind] = Kind.ERROR
    message: str
    request_id: str | None = None  # the request that failed; None: a command or the node itself


@dataclass(frozen=True)
class Log:
    KIND: ClassVar[Kind] = Kind.LOG
    line: str


# ---------------------------------------------------------------------------------------------- the swarm page's
# (fields and their checks in core/protocol_swarm.py)

SwarmMember, InviteInfo, KnownSwarm = sw.SwarmMember, sw.InviteInfo, sw.KnownSwarm


def _with_kind(fields: type, kind: Kind) -> type:
    """The message class of `kind`: a subclass of its fields' frozen dataclass that carries the kind."""
    return type(fields.__name__.removesuffix("Fields"), (fields,), {"KIND": kind, "__module__": __name__})


SwarmRefresh = _with_kind(sw.SwarmRefreshFields, Kind.SWARM_REFRESH)
InviteCreate = _with_kind(sw.InviteCreateFields, Kind.INVITE_CREATE)
InviteCancel = _with_kind(sw.InviteCancelFields, Kind.INVITE_CANCEL)
Revoke = _with_kind(sw.RevokeFields, Kind.REVOKE)
Leave = _with_kind(sw.LeaveFields, Kind.LEAVE)
Join = _with_kind(sw.JoinFields, Kind.JOIN)
Switch = _with_kind(sw.SwitchFields, Kind.SWITCH)
SwarmView = _with_kind(sw.SwarmViewFields, Kind.SWARM)
InviteMade = _with_kind(sw.InviteMadeFields, Kind.INVITE)
SwarmResult = _with_kind(sw.SwarmResultFields, Kind.SWARM_RESULT)
HistoryDay = dk.HistoryDay
Progress = _with_kind(dk.ProgressFields, Kind.PROGRESS)  # core/protocol_desktop.py
History = _with_kind(dk.HistoryFields, Kind.HISTORY)

Command = Union[Start, Pause, Resume, Drain, Shutdown, Generate, Cancel, SetConfig, Refresh,
                SwarmRefresh, InviteCreate, InviteCancel, Revoke, Leave, Join, Switch]
Event = Union[Hello, State, Sizing, Stats, Token, Done, Alert, Error, Log, SwarmView, InviteMade, SwarmResult,
              Progress, History]
Message = Union[Command, Event]

MESSAGE_CLASSES: dict[Kind, type] = {
    cls.KIND: cls for cls in typing.get_args(Command) + typing.get_args(Event)  # type: ignore[attr-defined]
}


# ---------------------------------------------------------------------------------------------- encoding


def encode(msg: Message) -> str:
    """One protocol line for `msg`, without the trailing newline. NaN and infinities are refused."""
    kind = getattr(type(msg), "KIND", None)
    if not isinstance(kind, Kind) or MESSAGE_CLASSES.get(kind) is not type(msg):
        raise TypeError(f"not a protocol message: {msg!r}")
    wire = {"v": PROTOCOL_VERSION, "kind": kind.value}
    wire.update(typed_json.to_json(msg))
    try:
        return typed_json.dumps(wire)
    except typed_json.TypedJsonError as exc:
        raise ProtocolError(f"{kind.value}: {exc}") from None


# ---------------------------------------------------------------------------------------------- decoding


def decode(line: str | bytes) -> Message:
    """Parse one protocol line. Raises ProtocolError, with a message that says what is wrong, on any bad input."""
    try:
        _check(len(line) <= MAX_LINE_CHARS * 4, f"line is too long ({len(line)} bytes)")
        text = line.strip()
        _check(bool(text), "empty line")
        data = typed_json.parse_object(text, max_chars=MAX_LINE_CHARS)
        _check("v" in data, f"message has no protocol version 'v': {typed_json.preview(str(data))}")
        version = data.get("v")
        _check(version == PROTOCOL_VERSION and not isinstance(version, bool),
               f"unsupported protocol version {version!r} (this side speaks {PROTOCOL_VERSION})")
        kind_value = data.get("kind")
        _check(isinstance(kind_value, str), f"message has no 'kind': {typed_json.preview(str(data))}")
        try:
            kind = Kind(kind_value)
        except ValueError:
            raise ProtocolError(f"unknown message kind {kind_value!r}") from None
        fields = {k: v for k, v in data.items() if k not in ("v", "kind")}
        return typed_json.build(MESSAGE_CLASSES[kind], fields, kind.value)
    except ProtocolError:
        raise
    except typed_json.TypedJsonError as exc:
        raise ProtocolError(str(exc)) from None


def decode_command(line: str | bytes) -> Command:
    """`decode`, and refuse events (the node reads only commands)."""
    msg = decode(line)
    _check(msg.KIND.is_command, f"expected a command, got the event {msg.KIND.value!r}")
    return msg  # type: ignore[return-value]


def decode_event(line: str | bytes) -> Event:
    """`decode`, and refuse commands (the GUI reads only events)."""
    msg = decode(line)
    _check(not msg.KIND.is_command, f"expected an event, got the command {msg.KIND.value!r}")
    return msg  # type: ignore[return-value]
