"""Choosing the next token from logits: greedy, or temperature / top-k / top-p sampling with a seeded generator.

Pure functions over tensors, in the order transformers applies them (repetition penalty, temperature, top-k,
top-p), so a seeded run is reproducible and greedy output matches `model.generate(do_sample=False)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    do_sample: bool = False  # False: greedy (argmax)
    temperature: float = 1.0  # > 0; below 1 sharpens, above 1 flattens
    top_k: int = 0  # keep the k likeliest tokens; 0 keeps all
    top_p: float = 1.0  # keep the smallest set whose probability reaches p; 1.0 keeps all
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the sequence
    seed: int | None = None  # fixes the sampling generator

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError("temperature must be greater than 0 (use greedy decoding for 'temperature 0')")
        if self.top_k < 0:
            raise ValueError("top_k must be 0 (off) or a positive number of tokens")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if not self.repetition_penalty > 0:
            raise ValueError("repetition_penalty must be greater than 0")


def apply_repetition_penalty(logits: torch.Tensor, seen_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Divide positive (multiply negative) logits of already-seen tokens by `penalty`, as transformers does."""
    if penalty == 1.0 or seen_ids.numel() == 0:
        return logits
    picked = logits.gather(-1, seen_ids)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return logits.scatter(-1, seen_ids, picked)


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= 1 - p
    remove_sorted[..., -1:] = False  # always keep the likeliest token
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


class TokenChooser:
    """Chooses tokens one by one for one generation (owns its seeded generator)."""

    def __init__(self, params: SamplingParams):
        self.params = params
        self.generator = torch.Generator()
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()

    def _penalised(self, logits: torch.Tensor, seen_ids: torch.Tensor) -> torch.Tensor:
        logits = logits.float().reshape(1, -1)
        return apply_repetition_penalty(logits, seen_ids.reshape(1, -1), self.params.repetition_penalty)

    def distribution(self, logits: torch.Tensor, seen_ids: torch.Tensor) -> torch.Tensor:
        """The probabilities sampling draws from ([1, vocab]): after the penalty, temperature, top-k and top-p."""
        logits = self._penalised(logits, seen_ids) / self.params.temperature
        return filter_top_p(filter_top_k(logits, self.params.top_k), self.params.top_p).softmax(dim=-1)

    def choose(self, logits: torch.Tensor, seen_ids: torch.Tensor) -> int:
        """`logits`: [vocab] for the last position; `seen_ids`: [n] token ids so far (prompt included)."""
        if not self.params.do_sample:
            return int(self._penalised(logits, seen_ids).argmax(dim=-1))
        return int(torch.multinomial(self.distribution(logits, seen_ids), 1, generator=self.generator))

    def judge(self, logits: torch.Tensor, seen_ids: torch.Tensor, guess: int,
              draft_probs: torch.Tensor | None = None) -> tuple[int, bool]:
        """Speculative decoding's check of one guessed token: (the token to emit, whether it is the guess).

        Greedy: the model's own choice, kept if it is the guess. Sampling: the guess is kept with probability
        min(1, p(guess) / q(guess)) where q is the draft's distribution (certain, q = 1 at the guess, when None);
        otherwise a token is drawn from the normalised max(0, p - q). Either way the emitted tokens follow the
        model's own distribution exactly.

        A certain guess (a prompt lookup) is checked by drawing the model's token exactly as plain sampling
        would, with the same generator, and keeping the guess when the draw equals it: the same distribution as
        the rule above, and with a seed the very reply plain sampling gives, guessing or not."""
        if not self.params.do_sample or draft_probs is None:
            token = self.choose(logits, seen_ids)
            return token, token == guess
        p = self.distribution(logits, seen_ids)[0]
        q = draft_probs.float().reshape(-1)
        accept = float(torch.clamp(p[guess] / q[guess], max=1.0)) if q[guess] > 0 else 0.0
        if float(torch.rand((), generator=self.generator)) < accept:
            return guess, True
        residual = torch.clamp(p - q, min=0.0)
        residual = residual if residual.sum() > 0 else p
        return int(torch.multinomial(residual / residual.sum(), 1, generator=self.generator)), False
