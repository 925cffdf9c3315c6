"""This PC's node, from a terminal on the same PC (`generate`, `chat` and `api` with `--swarm NAME`).

A member's identity in a private swarm is held by the node that runs it (p2pd refuses the same identity twice), so
a terminal program cannot join that swarm as this PC while the node runs. The node offers its chat client on a unix
socket instead, `<data dir>/run/<swarm id>.api.sock`, that only this user can open (0600 in a 0700 folder): the same
OpenAI-compatible API as `potluck api`, with the `potluck` extension in each reply (token ids, the route, timings).

`NodeClient` is a blocking client for `generate` and `chat` (its `generate` takes CausalLM.generate's arguments and
returns a `RemoteResult` with a GenerationResult's fields); `NodeEngine` is an Engine for `potluck api`, which
forwards each request to the node. httpx2 is imported when a connection is made.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from potluck.core import paths
from potluck.core.api.engine import Outcome
from potluck.core.api.responses import SseReader
from potluck.core.api.schema import SPECULATIVE_MODES, ApiError, CompletionRequest, Kind, Message, to_body
from potluck.core.errors import PotluckError
from potluck.core.protocol import RouteHop, StopReason

SOCKET_SUFFIX = ".api.sock"
BASE_URL = "http://potluck-node"  # the Host of requests on the socket (the node's socket app checks none)
CONNECT_TIMEOUT_SECONDS = 5.0
MODEL_EOS = object()  # "the model's own end-of-sequence token", as CausalLM's default


def node_socket(swarm_id: str) -> Path:
    """Where this PC's node of `swarm_id` listens for this user's terminal programs."""
    return paths.data_dir() / "run" / f"{swarm_id}{SOCKET_SUFFIX}"


class NodeEndpointError(PotluckError, RuntimeError):
    """This PC's node did not answer, or refused the request; the message says which and why."""


# ---- reading replies (pure) -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    piece: str = ""  # text this event adds to the reply
    details: dict | None = None  # the `potluck` extension of the last chunk
    error: ApiError | None = None
    done: bool = False  # [DONE]


def read_event(data: str) -> Event:
    """One server-sent event's data of a streamed chat or text completion."""
    if data == "[DONE]":
        return Event(done=True)
    try:
        obj = json.loads(data)
    except json.JSONDecodeError:
        return Event(error=ApiError(502, f"the node sent something that is not JSON: {data[:80]!r}"))
    if not isinstance(obj, dict):
        return Event(error=ApiError(502, "the node sent a stream event that is not an object"))
    if "error" in obj:
        return Event(error=api_error(500, obj))
    choices = obj.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    piece = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
    details = obj.get("potluck")
    return Event(piece=piece if isinstance(piece, str) else "", details=details if isinstance(details, dict) else None)


def api_error(status: int, body: object) -> ApiError:
    """The ApiError of an OpenAI error body (or of whatever else came back)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return ApiError(status, error["message"], param=error.get("param"), code=error.get("code"))
    return ApiError(status, f"the node answered {status}: {str(body)[:200]}")


def outcome_from(details: dict | None, text: str, cancelled: bool = False) -> Outcome:
    """The Outcome of a streamed reply: its text, and what the `potluck` extension says (nothing when cut off)."""
    d = details or {}
    try:
        reason = StopReason.CANCELLED if cancelled else StopReason(d.get("stop_reason", "length"))
        route = tuple(RouteHop(str(h["peer_id"]), str(h.get("name", "")), int(h["start_block"]), int(h["end_block"]))
                      for h in d.get("route", ()))
        return Outcome(text, reason, int(d.get("prompt_tokens", 0)), [int(t) for t in d.get("token_ids", ())], route,
                       str(d.get("compute", "")), float(d.get("prefill_seconds", 0.0)),
                       [float(s) for s in d.get("step_seconds", ())], int(d.get("failovers", 0)),
                       int(d.get("draft_proposed", 0)), int(d.get("draft_accepted", 0)), int(d.get("spot_checks", 0)),
                       tuple(str(p) for p in d.get("suspects", ())))
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(502, f"the node's reply details are malformed: {exc}") from None


@dataclass
class RemoteResult:
    """A reply through the node, with the fields of core.client.generation.GenerationResult."""
    token_ids: list[int]
    text: str
    stop_reason: StopReason
    route: tuple[RouteHop, ...]
    prefill_seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)
    failovers: list = field(default_factory=list)
    prompt_tokens: int = 0
    draft_proposed: int = 0  # speculative decoding: guesses checked, and kept
    draft_accepted: int = 0
    spot_checks: list = field(default_factory=list)  # one entry per step the node's client checked

    @property
    def tokens_per_second(self) -> float:
        total = self.prefill_seconds + sum(self.step_seconds)
        return len(self.token_ids) / total if total > 0 else 0.0

    @classmethod
    def of(cls, outcome: Outcome) -> RemoteResult:
        return cls(outcome.token_ids, outcome.text, outcome.stop_reason, outcome.route, outcome.prefill_seconds,
                   outcome.step_seconds, [None] * outcome.failovers, outcome.prompt_tokens, outcome.draft_proposed,
                   outcome.draft_accepted, [None] * outcome.spot_checks)


def completion_request(model: str, *, input_ids=None, prompt: str | None = None, messages: list[dict] | None = None,
                       max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                       top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int | None = None,
                       eos_token_id=MODEL_EOS, stop_strings=(), speculative: str | None = None,
                       private: bool = False) -> CompletionRequest:
    """CausalLM.generate's arguments as a streamed CompletionRequest (`speculative` off or lookup: the node has
    no draft model; None: the request's default)."""
    if speculative is not None and speculative not in SPECULATIVE_MODES:
        raise NodeEndpointError(f"speculative {speculative!r} is not offered through this PC's node: use "
                                f"{' or '.join(SPECULATIVE_MODES)}")
    if eos_token_id is not None and eos_token_id is not MODEL_EOS:
        raise ValueError("through the node a reply stops at the model's own end of sequence, or (None) never")
    sampling = dict(temperature=temperature, top_p=top_p, top_k=top_k, seed=seed) if do_sample else \
        dict(temperature=0.0)
    common = dict(model=model, max_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
                  stop=tuple(s for s in stop_strings if s), ignore_eos=eos_token_id is None, stream=True,
                  private=private, **sampling, **({} if speculative is None else {"speculative": speculative}))
    if messages is not None:
        return CompletionRequest(Kind.CHAT, messages=tuple(Message(m["role"], m["content"]) for m in messages),
                                 **common)
    if input_ids is not None:
        return CompletionRequest(Kind.TEXT, prompt_ids=tuple(int(i) for i in input_ids), **common)
    return CompletionRequest(Kind.TEXT, prompt=prompt, **common)


def _path(request: CompletionRequest) -> str:
    return "/v1/chat/completions" if request.kind is Kind.CHAT else "/v1/completions"


# ---- the blocking client --------------------------------------------------------------------------------------------
class NodeClient:
    """This PC's node as a model for `generate` and `chat` (see the module doc)."""

    tokenizer = None

    def __init__(self, socket_path: Path, swarm_name: str):
        import httpx2

        self.socket_path, self.swarm_name = Path(socket_path), swarm_name
        self.compute = ""
        self._http = httpx2.Client(transport=httpx2.HTTPTransport(uds=str(socket_path)), base_url=BASE_URL,
                                   timeout=httpx2.Timeout(None, connect=CONNECT_TIMEOUT_SECONDS))
        self.model_id = self._model_id()

    @property
    def model_name(self) -> str:
        return self.model_id

    def _model_id(self) -> str:
        try:
            response = self._http.get("/v1/models")
        except Exception as exc:
            raise self._unreachable(exc) from None
        ids = [m.get("id") for m in response.json().get("data", [])] if response.status_code == 200 else []
        if not ids:
            raise NodeEndpointError(f"this PC's node of {self.swarm_name!r} has no model set up yet")
        return ids[0]

    def _unreachable(self, exc: BaseException) -> NodeEndpointError:
        return NodeEndpointError(f"this PC's node of {self.swarm_name!r} does not answer on {self.socket_path} "
                                 f"({type(exc).__name__}: {exc}); if it is starting, try again in a moment")

    def generate(self, input_ids=None, *, on_token: Callable[[int, str], None] | None = None,
                 cancel: threading.Event | None = None, speculative: str = "off", draft_tokens: int = 8,
                 private: bool = False, **kwargs) -> RemoteResult:
        """Like CausalLM.generate; `on_token(-1, text)` streams (token ids come with the result). `speculative`
        off or lookup (the node guesses up to its own number of tokens: `draft_tokens` is not passed on)."""
        request = completion_request(self.model_id, input_ids=input_ids, speculative=speculative or "off",
                                     private=private, **kwargs)
        text, details, cancelled = "", None, False
        try:
            with self._http.stream("POST", _path(request), json=to_body(request)) as response:
                if response.status_code != 200:
                    response.read()
                    raise NodeEndpointError(f"this PC's node refused: {_error_of(response).message}")
                reader = SseReader()
                for line in response.iter_lines():
                    data = reader.feed(line)
                    event = read_event(data) if data is not None else None
                    if event is None:
                        continue
                    if event.error is not None:
                        raise NodeEndpointError(f"this PC's node: {event.error.message}")
                    if event.done:
                        break
                    text += event.piece
                    details = event.details or details
                    if event.piece and on_token is not None:
                        on_token(-1, event.piece)
                    if cancel is not None and cancel.is_set() and details is None:
                        cancelled = True  # leaving closes the stream: the node cancels the reply
                        break
        except NodeEndpointError:
            raise
        except Exception as exc:
            raise self._unreachable(exc) from None
        outcome = outcome_from(details, text, cancelled)
        self.compute = outcome.compute or self.compute
        return RemoteResult.of(outcome)

    def shutdown(self) -> None:
        self._http.close()


def _error_of(response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return api_error(response.status_code, body)


# ---- an Engine for `potluck api` ------------------------------------------------------------------------------------
class NodeEngine:
    """Forwards each request to this PC's node (streamed, whatever the client asked) and passes its pieces on."""

    def __init__(self, socket_path: Path, model_ids: list[str]):
        self.socket_path, self._ids = Path(socket_path), list(model_ids)
        self._http = None  # an httpx2.AsyncClient, made on the server's loop

    def model_ids(self) -> list[str]:
        return self._ids

    async def run(self, request: CompletionRequest, on_piece: Callable[[str], None],
                  cancel: threading.Event) -> Outcome:
        import httpx2

        if self._http is None:
            transport = httpx2.AsyncHTTPTransport(uds=str(self.socket_path))
            self._http = httpx2.AsyncClient(transport=transport, base_url=BASE_URL,
                                            timeout=httpx2.Timeout(None, connect=CONNECT_TIMEOUT_SECONDS))
        forwarded = replace(request, model=self._ids[0], stream=True, include_usage=False)
        text, details = "", None
        try:
            async with self._http.stream("POST", _path(forwarded), json=to_body(forwarded)) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _error_of(response)
                reader = SseReader()
                async for line in response.aiter_lines():
                    data = reader.feed(line)
                    event = read_event(data) if data is not None else None
                    if event is None:
                        continue
                    if event.error is not None:
                        raise event.error
                    if event.done:
                        break
                    text += event.piece
                    details = event.details or details
                    if event.piece:
                        on_piece(event.piece)
                    if cancel.is_set() and details is None:
                        return outcome_from(None, text, cancelled=True)
        except httpx2.TransportError as exc:
            raise ApiError(503, f"this PC's node does not answer: {exc}", code="node_unavailable") from None
        return outcome_from(details, text)
