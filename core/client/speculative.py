"""Speculative decoding: guess several tokens, let the swarm check them in one pass, keep what it agrees with.

A token through a chain of friends' PCs pays every link's latency; checking k guessed tokens in one multi-token
step costs a CPU server about what one token costs (the step is bound by reading the weights), so every accepted
guess saves a whole trip through the chain. The servers already take multi-token steps and roll their caches back
to an absolute position, so a rejected guess costs nothing to undo.

- Draft sources: `PromptLookup` (the tokens that followed the latest earlier occurrence of the text's last n-gram:
  free, and very good when the reply copies from the prompt) and `DraftModel` (a small local model with the same
  tokenizer, run greedily, with its own cache).
- `verify` is the acceptance rule. Greedy: a guess is kept while it equals the model's own choice, then the model's
  token follows, so the output is exactly plain greedy decoding. Sampling with a draft model: the standard
  speculative-sampling rule (accept guess d with probability min(1, p(d)/q(d)), else sample from the normalised
  max(0, p - q)) keeps the model's distribution. Sampling with lookup guesses: the model's token is drawn as plain
  sampling draws it and the guess is kept when they are equal, so a seeded reply is the same, guessing or not.
- `AdaptiveDraftLength` shrinks k after misses and grows it after full acceptances, so a poor draft source
  proposes little and costs little.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from potluck.core.client.sampling import TokenChooser

MAX_DRAFT_TOKENS = 16  # the servers keep at least 64 tokens of rollback margin on sliding-window layers
MAX_REST_STEPS = 16  # the longest run of steps without guesses after repeated misses


class DraftSource(Protocol):
    def propose(self, tokens: list[int], k: int) -> tuple[list[int], torch.Tensor | None]:
        """Up to `k` guessed next tokens after `tokens`, and their draft distributions ([n, vocab]) or None when
        each guess is certain (q = 1 at the guess)."""


@dataclass
class PromptLookup:
    """Guesses the continuation of the text's last n-gram from its latest earlier occurrence (prompt or reply)."""

    max_ngram: int = 3
    min_ngram: int = 2  # one matching token is weak evidence: in open chat it proposed mostly misses

    def propose(self, tokens: list[int], k: int) -> tuple[list[int], None]:
        if k <= 0:
            return [], None
        for n in range(min(self.max_ngram, len(tokens) - 1), self.min_ngram - 1, -1):
            suffix = tokens[-n:]
            for start in range(len(tokens) - n - 1, -1, -1):  # latest earlier occurrence first
                if tokens[start : start + n] == suffix:
                    follow = tokens[start + n : start + n + k]
                    if follow:
                        return follow, None
        return [], None


class DraftModel:
    """A small local model sharing the big model's tokenizer: proposes its greedy continuation. Its cache follows
    the text: what the big model rejected is rolled back, what it accepted is fed in before the next proposal."""

    def __init__(self, stack, parts, max_length: int = 8192):
        self.stack, self.parts, self.max_length = stack, parts, max_length
        self.cache = stack.new_cache()
        self.cached: list[int] = []  # the tokens whose keys and values the cache holds, in order

    def _forward(self, ids: list[int]) -> torch.Tensor:
        param = next(self.stack.parameters())
        with torch.inference_mode():
            hidden = self.parts.embed_ids(torch.tensor([ids])).to(param.dtype)
            out = self.stack(hidden, self.cache)
            return self.parts.logits(out[:, -1:].float())[0, -1]

    def propose(self, tokens: list[int], k: int) -> tuple[list[int], None]:
        if k <= 0:
            return [], None
        common = 0
        while common < min(len(self.cached), len(tokens) - 1) and self.cached[common] == tokens[common]:
            common += 1
        if common < len(self.cached):
            self.stack.rollback(self.cache, common)
            self.cached = self.cached[:common]
        logits = self._forward(tokens[common:])
        self.cached = list(tokens)
        guesses = []
        for _ in range(k):
            token = int(logits.argmax())
            guesses.append(token)
            if len(guesses) == k:
                break
            logits = self._forward([token])
            self.cached.append(token)
        return guesses, None


@dataclass
class AdaptiveDraftLength:
    """How many tokens to guess next: halves after a miss, grows by one after a full acceptance, and rests after
    misses at one guess: no guesses for 1, 2, 4, … up to MAX_REST_STEPS steps, so a draft source that keeps
    missing (open chat, where lookup finds little to copy) costs a few multi-token steps per reply, not one in
    two. A kept guess ends the rest at once."""

    max_tokens: int = 8
    current: int = 4
    proposed: int = 0  # totals, for the caller's report
    accepted: int = 0
    resting: int = 0  # steps left without guesses
    last_rest: int = 0  # the length of the latest rest (doubles while misses go on)

    def __post_init__(self) -> None:
        if not 0 <= self.max_tokens <= MAX_DRAFT_TOKENS:
            raise ValueError(f"draft tokens must be between 0 and {MAX_DRAFT_TOKENS}")
        self.current = min(self.current, self.max_tokens)

    def next_length(self) -> int:
        """The number of guesses for the coming step (0 while resting; call once per step)."""
        if self.resting > 0:
            self.resting -= 1
            return 0
        return self.current

    def update(self, proposed: int, accepted: int) -> None:
        self.proposed += proposed
        self.accepted += accepted
        if proposed == 0:
            return
        if accepted > 0:
            self.last_rest = 0
        if accepted == proposed:
            self.current = min(self.max_tokens, self.current + 1)
        elif accepted == 0 and self.current > 1:
            self.current = max(1, self.current // 2)
        elif accepted == 0:  # a miss with a single guess: rest, longer each time
            self.last_rest = min(MAX_REST_STEPS, max(1, 2 * self.last_rest))
            self.resting = self.last_rest


@dataclass
class Verdict:
    tokens: list[int]  # what the model emits: the accepted guesses, then one token of its own
    accepted: int  # how many guesses were kept
    rows_used: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows_used = len(self.tokens)


def verify(chooser: TokenChooser, logits: torch.Tensor, guesses: list[int], seen: list[int],
           draft_probs: torch.Tensor | None = None) -> Verdict:
    """Check `guesses` against the model's logits for the positions that ended in them (`logits`: [len(guesses)+1,
    vocab]; row i predicts the token after the i-th input). `seen`: every token before the first row's input and
    that input (prompt and reply so far), for the repetition penalty."""
    seen = list(seen)
    out: list[int] = []
    for i, guess in enumerate(guesses):
        q = None if draft_probs is None else draft_probs[i]
        token, kept = chooser.judge(logits[i], torch.tensor(seen), guess, q)
        out.append(token)
        if not kept:
            return Verdict(out, i)
        seen.append(token)
    out.append(chooser.choose(logits[len(guesses)], torch.tensor(seen)))
    return Verdict(out, len(guesses))
