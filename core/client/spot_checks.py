"""Spot checks of friends' compute: the rules (which steps, how close is "the same", who was wrong).

A client checks a step now and then (`SpotCheckPolicy.rate` of the steps, at random): it runs the session's inputs
so far through a second chain in which one span of the route is computed by other servers, and compares the final
hidden states of the step (core/client/checker.py runs it). This module holds the decisions, as plain functions:

- `tolerance_for(compute)`: how far two honest computations of the same blocks may differ, as a relative L2
  difference per token (`relative_error`). Measured on SmolLM2-135M (30 blocks), the same input computed with other
  chunking (the check replays the prefix in one chunk, the session computed it token by token) or with a 1e-7
  relative nudge (what another CPU's rounding does) differs, over the whole model, by (core/client/checker.py's
  `relative_error`):

  | compute | chunking | 1e-7 nudge | tolerance |
  | --- | --- | --- | --- |
  | float32 | 9.6e-7 | 1.2e-6 | 1e-3 |
  | float32+int8 (16-bit activations) | 1.1e-4 | 1.2e-4 | 1e-3 |
  | bfloat16 | 2.5e-2 | (a 1e-6 nudge: 1.5e-2; 2.1e-2 from float32) | 0.1 |
  | float32+int4 (8-bit activations) | 3.1e-2 | 2.7e-2 | 0.1 |

  The int4 kernels give the same bits on every machine, but their 8-bit activations turn the float32 parts'
  last-bit differences into 2-3 % of the output: int4 cannot be checked exactly, only like bfloat16.
  (bench/bench_spot_checks.py measures these again.) An unknown compute name gets the loose tolerance.
- `judge`: given which results agree, which one is right and which servers were wrong. A result computed on this
  PC is trusted; otherwise a strict majority decides; two results that disagree with nothing else to ask are a
  dispute (both sides are suspects: the check cannot tell who lied).

Light: standard library only (the command line checks a rate with it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_RATE = 0.02  # fraction of steps checked
DEFAULT_MAX_TOKENS = 1024  # a step of a session holding more tokens is not checked: a check replays them all
TIGHT_TOLERANCE = 1e-3  # float32 arithmetic (also with int8 weights and 16-bit activations)
LOOSE_TOLERANCE = 0.1  # 16-bit floats, and int4 weights with 8-bit activations
_TOLERANCES = {"float32": TIGHT_TOLERANCE, "float64": TIGHT_TOLERANCE, "float32+int8": TIGHT_TOLERANCE,
               "bfloat16": LOOSE_TOLERANCE, "float16": LOOSE_TOLERANCE, "float32+int4": LOOSE_TOLERANCE}


class SpotCheckError(ValueError):
    """A spot-check setting out of range; the message says what is allowed."""


@dataclass(frozen=True)
class SpotCheckPolicy:
    """How often to check. rate 0 turns checks off; rate 1 checks every step (tests, or a suspicious user)."""

    rate: float = DEFAULT_RATE  # fraction of steps checked, at random
    max_tokens: int = DEFAULT_MAX_TOKENS  # steps of sessions holding more tokens than this are not checked
    seed: int | None = None  # for reproducible choices (tests)
    _random: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0 <= self.rate <= 1:
            raise SpotCheckError(f"the spot-check rate must be a number from 0 (off) to 1 (every step), got {self.rate!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise SpotCheckError(f"max_tokens must be a whole number >= 1, got {self.max_tokens!r}")
        object.__setattr__(self, "_random", random.Random(self.seed))

    def should_check(self, tokens_after_step: int) -> bool:
        """Whether to check the step that brought the session to `tokens_after_step` tokens."""
        if self.rate <= 0 or tokens_after_step > self.max_tokens:
            return False
        return self.rate >= 1 or self._random.random() < self.rate

    def order(self, choices: Sequence[int]) -> list[int]:
        """`choices` (spans of the route) in a random order: the first that other servers can compute is checked."""
        shuffled = list(choices)
        self._random.shuffle(shuffled)
        return shuffled


def tolerance_for(compute: str) -> float:
    """The largest relative difference two honest results may have at this compute name (see the module doc)."""
    return _TOLERANCES.get(compute, LOOSE_TOLERANCE)


@dataclass(frozen=True)
class Judgement:
    right: int | None  # the result to keep (an index into the opinions), None when no one can tell
    wrong: frozenset[int]  # results shown wrong: their servers become suspects
    disputed: frozenset[int]  # results in a dispute no one could settle: their servers become suspects too

    @property
    def suspects(self) -> frozenset[int]:
        return self.wrong | self.disputed


def judge(trusted: Sequence[bool], agree: Sequence[Sequence[bool]]) -> Judgement:
    """Which of n results of the same step is right. `trusted[i]`: result i was computed on this PC;
    `agree[i][j]`: results i and j are within tolerance (symmetric, agree[i][i] true).

    - A trusted result decides (the first one): the results that disagree with it are wrong.
    - Otherwise the results agreeing with one result, itself included, win when they are more than half of all;
      the others are wrong. (Of the results that reach a majority, the first is kept.)
    - Otherwise no one wins, and every result that disagrees with another is disputed.
    """
    n = len(trusted)
    if n == 0 or len(agree) != n or any(len(row) != n for row in agree):
        raise ValueError("judge needs one trust flag and one row of agreements per result")
    for i in range(n):
        if not agree[i][i] or any(agree[i][j] != agree[j][i] for j in range(n)):
            raise ValueError("agreement must be symmetric and every result must agree with itself")
    first_trusted = next((i for i in range(n) if trusted[i]), None)
    if first_trusted is not None:
        wrong = frozenset(j for j in range(n) if not agree[first_trusted][j])
        return Judgement(first_trusted, wrong, frozenset())
    for i in range(n):
        group = [j for j in range(n) if agree[i][j]]
        if 2 * len(group) > n:
            return Judgement(i, frozenset(j for j in range(n) if j not in group), frozenset())
    disputed = frozenset(i for i in range(n) if not all(agree[i]))
    return Judgement(None, frozenset(), disputed)
