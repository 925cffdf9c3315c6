"""Generation, whatever runs the blocks: the swarm (core/client/model.py) or this process (core/client/local.py).

`generate_tokens` drives one session: prefill, then decoding (sampling, stop rules, streaming), and returns a
`GenerationResult`. With a draft source (core/client/speculative.py) each step carries the last token and up to
k guesses, and the session rolls back what the model rejected. A session is anything with `await open()`,
`await step(hidden) -> hidden`, `rollback_to(position)`, `await close()`, `route_hops()` and `failovers`. Text is
decoded incrementally (`Detokenizer`): each new token costs a decode of a few tokens, not of the whole reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from potluck.core.client.sampling import SamplingParams, TokenChooser
from potluck.core.client.speculative import AdaptiveDraftLength, DraftSource, verify
from potluck.core.protocol import RouteHop, StopReason
from potluck.core.wire.tensors import max_chunk_tokens


@dataclass
class GenerationResult:
    token_ids: list[int]  # the new tokens only
    text: str  # the new text only
    stop_reason: StopReason  # LENGTH, EOS, STOP_SEQUENCE or CANCELLED
    route: tuple[RouteHop, ...]  # which server ran which blocks, in order
    prefill_seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)  # one per generated token after the first
    failovers: list = field(default_factory=list)  # core.client.inference.Failover records
    prompt_tokens: int = 0
    draft_proposed: int = 0  # speculative decoding: guessed tokens sent for checking
    draft_accepted: int = 0  # and kept
    spot_checks: list = field(default_factory=list)  # core.client.checker.CheckReport of the steps checked

    @property
    def tokens_per_second(self) -> float:
        total = self.prefill_seconds + sum(self.step_seconds)
        return len(self.token_ids) / total if total > 0 else 0.0


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    sampling: SamplingParams
    eos_ids: frozenset[int] = frozenset()
    stop_strings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise ValueError("the prompt is empty")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")


class Session(Protocol):
    failovers: list
    position: int  # tokens the blocks hold

    async def open(self) -> None: ...
    async def step(self, hidden: torch.Tensor) -> torch.Tensor: ...
    def rollback_to(self, position: int) -> None: ...
    async def close(self) -> None: ...
    def route_hops(self) -> tuple[RouteHop, ...]: ...


class Detokenizer:
    """The text each new token adds, decoding only a short window of recent tokens.

    As streaming servers do: the text of tokens [prefix, read) was already emitted; a new token's piece is
    decode(ids[prefix:]) minus decode(ids[prefix:read]). While the newest text ends in an incomplete character
    (U+FFFD), nothing is emitted; the piece comes with the token that completes it."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True) if self.tokenizer is not None else ""

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            piece = after[len(before):]
            self._prefix, self._read = self._read, len(self.ids)
            return piece
        return ""

    def text(self) -> str:
        """The whole reply, decoded once."""
        return self._decode(self.ids)


def _stop_cut(text: str, stop_strings: Sequence[str]) -> int | None:
    cuts = [text.index(s) for s in stop_strings if s and s in text]
    return min(cuts) if cuts else None


@dataclass
class _Reply:
    """The reply so far and why it ended (when it did)."""

    request: GenerationRequest
    detokenizer: Detokenizer
    on_token: Callable[[int, str], None] | None
    cancel: object
    text: str = ""
    reason: StopReason | None = None

    def emit(self, token: int) -> bool:
        """Add one token; True when the reply is finished."""
        piece = self.detokenizer.add(token)
        self.text += piece
        if self.on_token is not None:
            self.on_token(token, piece)
        longest_stop = max((len(s) for s in self.request.stop_strings), default=0)
        if token in self.request.eos_ids:
            self.reason = StopReason.EOS
        elif longest_stop and _stop_cut(self.text[-(len(piece) + longest_stop):], self.request.stop_strings) is not None:
            self.reason = StopReason.STOP_SEQUENCE
        elif self.cancel is not None and self.cancel.is_set():
            self.reason = StopReason.CANCELLED
        elif len(self.detokenizer.ids) >= self.request.max_new_tokens:
            self.reason = StopReason.LENGTH
        return self.reason is not None


class _RowLogits:
    """The logits of a verification step's rows, computed when verification asks: the first row alone, then (once
    the first guess is kept) all the others in one product. In open chat the first guess usually misses and the head
    (a vocabulary of 50k-200k rows) runs for one row instead of k+1; when copying, two products cover them all."""

    def __init__(self, parts, hidden: torch.Tensor):
        self.parts, self.hidden, self.rows = parts, hidden, {}

    def __getitem__(self, row: int) -> torch.Tensor:
        if row not in self.rows:
            first = 0 if row == 0 else 1
            last = 1 if row == 0 else self.hidden.shape[1]
            logits = self.parts.logits(self.hidden[:, first:last].float())[0]
            self.rows.update({first + i: logits[i] for i in range(last - first)})
        return self.rows[row]


async def generate_tokens(session: Session, parts, tokenizer, request: GenerationRequest, *, wire_dtype: torch.dtype,
                          on_token: Callable[[int, str], None] | None = None, cancel=None,
                          draft: DraftSource | None = None, draft_tokens: int = 0) -> GenerationResult:
    """Run one generation on a session (this function opens and closes it). With `draft`, up to `draft_tokens`
    guesses ride along with each step (adapted to how many are accepted)."""
    chooser = TokenChooser(request.sampling)
    reply = _Reply(request, Detokenizer(tokenizer), on_token, cancel)
    lengths = AdaptiveDraftLength(max_tokens=draft_tokens if draft is not None else 0)
    step_seconds: list[float] = []
    await session.open()
    try:
        began = time.perf_counter()
        embedded = parts.embed_ids(torch.tensor([list(request.prompt_ids)])).to(wire_dtype)
        chunk = max_chunk_tokens(embedded.shape[-1], wire_dtype)
        for start in range(0, embedded.shape[1], chunk):
            hidden = await session.step(embedded[:, start : start + chunk])
        prefill_seconds = time.perf_counter() - began
        seen = list(request.prompt_ids)
        token = chooser.choose(parts.logits(hidden[:, -1:].float())[0, -1], torch.tensor(seen))
        seen.append(token)
        while not reply.emit(token):
            began = time.perf_counter()
            room = request.max_new_tokens - len(reply.detokenizer.ids) - 1  # guesses past the end are wasted
            guesses, draft_probs = draft.propose(seen, min(lengths.next_length(), room)) if draft is not None \
                else ([], None)
            position = session.position
            hidden = await session.step(parts.embed_ids(torch.tensor([[token, *guesses]])).to(wire_dtype))
            if not guesses:
                token = chooser.choose(parts.logits(hidden[:, -1:].float())[0, -1], torch.tensor(seen))
                seen.append(token)
                step_seconds.append(time.perf_counter() - began)
                continue
            verdict = verify(chooser, _RowLogits(parts, hidden), guesses, seen, draft_probs)
            lengths.update(len(guesses), verdict.accepted)
            if verdict.accepted < len(guesses):
                session.rollback_to(position + 1 + verdict.accepted)  # the rejected guesses leave the caches
            step_seconds.append(time.perf_counter() - began)
            *kept, token = verdict.tokens
            finished = False
            for accepted_token in kept:
                seen.append(accepted_token)
                if reply.emit(accepted_token):
                    finished = True
                    break
            if finished:
                break
            seen.append(token)
        text = reply.detokenizer.text()
        if reply.reason is StopReason.STOP_SEQUENCE:
            text = text[: _stop_cut(text, request.stop_strings)]
        return GenerationResult(reply.detokenizer.ids, text, reply.reason, session.route_hops(), prefill_seconds,
                                step_seconds, list(session.failovers), len(request.prompt_ids), lengths.proposed,
                                lengths.accepted, list(getattr(session, "checks", ())))
    finally:
        await session.close()
