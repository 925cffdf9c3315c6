"""What the API server runs a checked request on: an `Engine`. `CausalLMEngine` runs it on any CausalLM (the
swarm's DistributedModelForCausalLM, the LocalModelForCausalLM, the node's chat client); core/api/gateway.py has
one that forwards to this PC's node.

An engine's `run(request, on_piece, cancel)` is a coroutine on the server's event loop. It calls `on_piece(text)`
on that same loop for each piece of the reply as it comes, stops soon after `cancel` (a threading.Event) is set,
and returns an `Outcome`. Failures are raised as they are; `error_for` turns any exception into the ApiError a
client is shown (a bad request 400, a swarm that cannot serve 503, anything else 500).

The request's Potluck extensions reach the model: `speculative` ("lookup"/"off") and `private` (the first and last
blocks on this PC) are passed to `agenerate`; the outcome reports guesses kept and spot checks made.

How a CausalLM runs it: the prompt is encoded (chat messages through the model's chat template) and checked on a
worker thread (building the node's client may take a while), then `model.agenerate` runs on the model's own event
loop (a DistributedModelForCausalLM's LoopThread), or, for a model without one, on a worker thread through
`model.run`. Cancelling the awaiting task cancels the generation there too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from potluck.core.api.schema import ApiError, CompletionRequest, Kind, bad, plan_max_tokens
from potluck.core.errors import PotluckError
from potluck.core.protocol import RouteHop, StopReason


@dataclass
class Outcome:
    """A finished reply."""
    text: str  # the whole reply, cut at its stop string
    stop_reason: StopReason
    prompt_tokens: int
    token_ids: list[int]
    route: tuple[RouteHop, ...] = ()
    compute: str = ""
    prefill_seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)
    failovers: int = 0
    draft_proposed: int = 0  # speculative decoding: guesses checked, and kept
    draft_accepted: int = 0
    spot_checks: int = 0  # steps recomputed by other servers and compared
    suspects: tuple[str, ...] = ()  # servers those checks caught computing wrong (peer ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    def details(self) -> dict:
        """The `potluck` extension of a response: what this PC's own clients print (route, token ids, timings)."""
        return {"token_ids": self.token_ids, "stop_reason": self.stop_reason.value, "prompt_tokens": self.prompt_tokens,
                "route": [{"peer_id": h.peer_id, "name": h.name, "start_block": h.start_block, "end_block": h.end_block}
                          for h in self.route],
                "compute": self.compute, "prefill_seconds": self.prefill_seconds, "step_seconds": self.step_seconds,
                "failovers": self.failovers, **self._extras()}

    def _extras(self) -> dict:
        """Guesses and spot checks, only when there were any (a reply without them reads as before)."""
        extras = {"draft_proposed": self.draft_proposed, "draft_accepted": self.draft_accepted,
                  "spot_checks": self.spot_checks, "suspects": list(self.suspects)}
        return {name: value for name, value in extras.items() if value}


class Engine(Protocol):
    def model_ids(self) -> list[str]:
        """The names a request may give as `model`; the first is the one GET /v1/models lists. Empty: no model yet."""
        ...

    async def run(self, request: CompletionRequest, on_piece: Callable[[str], None],
                  cancel: threading.Event) -> Outcome: ...


def error_for(exc: BaseException) -> ApiError:
    """What a client is told about a failed request."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, PotluckError) and isinstance(exc, ValueError):  # e.g. private mode on a model too small
        return bad(str(exc))
    if isinstance(exc, (PotluckError, ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return ApiError(503, f"the swarm cannot answer right now: {str(exc) or type(exc).__name__}",
                        code="swarm_unavailable")
    if isinstance(exc, ValueError):
        return bad(str(exc))
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}")


class CausalLMEngine:
    """Requests on a CausalLM. `model` is the model, or a function returning it (called for every request, on a
    worker thread: the node builds its client on first use); `names` the model ids requests may use (a function
    for the node, whose model can change); `on_token` is called for every generated token (the node counts them)."""

    def __init__(self, model, names: list[str] | Callable[[], list[str]], *,
                 on_token: Callable[[], None] = lambda: None):
        self._model = model if callable(model) else (lambda: model)
        self._names = names if callable(names) else (lambda: list(names))
        self._on_token = on_token

    def model_ids(self) -> list[str]:
        return self._names()

    async def run(self, request: CompletionRequest, on_piece: Callable[[str], None],
                  cancel: threading.Event) -> Outcome:
        loop = asyncio.get_running_loop()
        model, generation = await asyncio.to_thread(self._prepare, request)

        def on_token(token_id: int, piece: str) -> None:  # on the model's loop
            self._on_token()
            if piece:
                loop.call_soon_threadsafe(on_piece, piece)

        result = await _run_on_model_loop(model, model.agenerate(generation, on_token=on_token, cancel=cancel,
                                                                 speculative=request.speculative,
                                                                 private=request.private))
        checks = getattr(result, "spot_checks", [])
        return Outcome(result.text, result.stop_reason, len(generation.prompt_ids), list(result.token_ids),
                       tuple(result.route), model.compute, result.prefill_seconds, list(result.step_seconds),
                       len(result.failovers), result.draft_proposed, result.draft_accepted, len(checks),
                       tuple(dict.fromkeys(peer for check in checks for peer in check.suspects)))

    def _prepare(self, request: CompletionRequest):
        """(model, GenerationRequest) for `request`; ApiError when it cannot run as asked."""
        model = self._model()
        try:
            if request.kind is Kind.CHAT:
                ids = model.encode(messages=[{"role": m.role, "content": m.content} for m in request.messages])
            elif request.prompt_ids is not None:
                ids = list(request.prompt_ids)
            else:
                ids = model.encode(prompt=request.prompt)
        except ValueError as exc:
            raise bad(str(exc), "messages" if request.kind is Kind.CHAT else "prompt") from None
        context = getattr(model.spec.config, "max_position_embeddings", None)
        max_new = plan_max_tokens(len(ids), request.max_tokens, context if isinstance(context, int) else None)
        kwargs = request.sampling_kwargs()
        if request.ignore_eos:
            kwargs["eos_token_id"] = None
        try:
            return model, model.request(ids, max_new_tokens=max_new, stop_strings=request.stop, **kwargs)
        except ValueError as exc:
            raise bad(str(exc), "prompt" if request.kind is Kind.TEXT else None) from None


async def _run_on_model_loop(model, coro):
    """Await `coro` on the model's own event loop, or on a worker thread through `model.run` when it has none."""
    own_loop = getattr(getattr(model, "loop", None), "loop", None)
    if isinstance(own_loop, asyncio.AbstractEventLoop):
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, own_loop))
    return await asyncio.to_thread(model.run, coro, None)
