"""How many transformer blocks this PC can host, sized from *free* memory, and when to shed or grow at runtime.

Pure functions over numbers: the caller probes free VRAM/RAM and the model's per-block sizes, these decide.

    usable = free - reserve - workspace
    per block = weights + KV cache for `cache_tokens` tokens
    blocks = min(usable // per block, model's block count, user cap)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from potluck.core.errors import PotluckError
from potluck.core.numbers import format_bytes, require_int

DEVICES = ("cuda", "cpu")
LIMITS = ("memory", "model size", "user cap")


class SizingError(PotluckError):
    """Not even one block fits; the message says why in words and numbers, for the owner to read."""


@dataclass(frozen=True)
class MemoryPlanInput:
    device: str  # "cuda" (free_bytes = free VRAM) or "cpu" (free_bytes = available RAM)
    free_bytes: int  # memory free right now on that device
    bytes_per_block: int  # weights of one block in the chosen dtype
    cache_bytes_per_token_per_block: int  # 2 * num_kv_heads * head_dim * dtype bytes
    cache_tokens: int  # KV-cache tokens budgeted per block (all sessions together)
    workspace_bytes: int  # activations and temporary buffers while computing
    reserve_bytes: int  # left free for the owner's other programs
    max_blocks: int  # the model's block count
    user_cap_blocks: int | None = None  # the owner's --num-blocks style upper limit, if any

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("free_bytes", "cache_bytes_per_token_per_block", "cache_tokens", "workspace_bytes",
                     "reserve_bytes"):
            require_int(name, getattr(self, name), minimum=0)
        require_int("bytes_per_block", self.bytes_per_block, minimum=1)
        require_int("max_blocks", self.max_blocks, minimum=1)
        if self.user_cap_blocks is not None:
            require_int("user_cap_blocks", self.user_cap_blocks, minimum=1)

    @property
    def cache_bytes_per_block(self) -> int:
        return self.cache_bytes_per_token_per_block * self.cache_tokens

    @property
    def per_block_total_bytes(self) -> int:
        return self.bytes_per_block + self.cache_bytes_per_block

    @property
    def usable_bytes(self) -> int:
        """Free memory left for blocks after the reserve and the workspace; negative when even those do not fit."""
        return self.free_bytes - self.reserve_bytes - self.workspace_bytes


@dataclass(frozen=True)
class SizingDecision:
    num_blocks: int  # blocks to host, >= 1
    usable_bytes: int  # free - reserve - workspace
    per_block_total_bytes: int  # weights + KV cache of one block
    limited_by: str  # "memory", "model size" or "user cap": the tightest limit
    explanation: str  # plain words with numbers, for the dashboard


def plan_num_blocks(inp: MemoryPlanInput) -> SizingDecision:
    """Decide how many blocks fit. Raises SizingError when not even one does.

    When several limits are equally tight, the one the owner can least change is named: model size, then memory,
    then the user cap.
    """
    per_block = inp.per_block_total_bytes
    usable = inp.usable_bytes
    if usable < per_block:
        raise SizingError(_refusal(inp))
    fit_blocks = usable // per_block
    cap_blocks = inp.user_cap_blocks if inp.user_cap_blocks is not None else math.inf
    num_blocks = int(min(fit_blocks, inp.max_blocks, cap_blocks))
    if num_blocks == inp.max_blocks:
        limited_by = "model size"
    elif num_blocks == fit_blocks:
        limited_by = "memory"
    else:
        limited_by = "user cap"
    return SizingDecision(
        num_blocks=num_blocks,
        usable_bytes=usable,
        per_block_total_bytes=per_block,
        limited_by=limited_by,
        explanation=_explain(inp, fit_blocks, num_blocks, limited_by),
    )


def blocks_to_shed(current_blocks: int, free_bytes_now: int, reserve_bytes: int, per_block_total_bytes: int) -> int:
    """How many blocks to unload now so that free memory gets back to the reserve (0 when it already is).

    `per_block_total_bytes` is what unloading one block gives back (its weights and its cache). The answer never
    exceeds `current_blocks`; when it equals it, the server can keep nothing and should pause.
    """
    require_int("current_blocks", current_blocks, minimum=0)
    require_int("free_bytes_now", free_bytes_now, minimum=0)
    require_int("reserve_bytes", reserve_bytes, minimum=0)
    require_int("per_block_total_bytes", per_block_total_bytes, minimum=1)
    shortfall_bytes = reserve_bytes - free_bytes_now
    if shortfall_bytes <= 0:
        return 0
    return min(current_blocks, -(-shortfall_bytes // per_block_total_bytes))  # ceil division


def blocks_to_grow(
    current_blocks: int,
    free_bytes_now: int,
    reserve_bytes: int,
    per_block_total_bytes: int,
    max_blocks: int,
    *,
    margin_bytes: int | None = None,
    user_cap_blocks: int | None = None,
) -> int:
    """How many blocks could be added now, keeping `reserve + margin` free afterwards (0 when none).

    Hysteresis: shedding stops as soon as free >= reserve, but growing needs free >= reserve + one block + margin,
    so a server that just shed does not grow straight back. `margin_bytes` defaults to half a block. The caller
    grows only after this has stayed positive for a while (its own timer), and takes the smallest value seen.
    """
    require_int("current_blocks", current_blocks, minimum=0)
    require_int("free_bytes_now", free_bytes_now, minimum=0)
    require_int("reserve_bytes", reserve_bytes, minimum=0)
    require_int("per_block_total_bytes", per_block_total_bytes, minimum=1)
    require_int("max_blocks", max_blocks, minimum=1)
    if margin_bytes is None:
        margin_bytes = per_block_total_bytes // 2
    require_int("margin_bytes", margin_bytes, minimum=0)
    limit_blocks = max_blocks
    if user_cap_blocks is not None:
        require_int("user_cap_blocks", user_cap_blocks, minimum=1)
        limit_blocks = min(limit_blocks, user_cap_blocks)
    if current_blocks > max_blocks:
        raise ValueError(f"current_blocks ({current_blocks}) exceeds max_blocks ({max_blocks})")
    spare_bytes = free_bytes_now - reserve_bytes - margin_bytes
    if spare_bytes < per_block_total_bytes:
        return 0
    return max(0, min(spare_bytes // per_block_total_bytes, limit_blocks - current_blocks))


def _where(device: str) -> str:
    return "free on the GPU" if device == "cuda" else "of RAM available"


def _budget_sentence(inp: MemoryPlanInput) -> str:
    return (f"{format_bytes(inp.free_bytes)} {_where(inp.device)} − {format_bytes(inp.reserve_bytes)} reserve − "
            f"{format_bytes(inp.workspace_bytes)} workspace leaves {format_bytes(max(inp.usable_bytes, 0))}")


def _per_block_sentence(inp: MemoryPlanInput) -> str:
    return (f"{format_bytes(inp.bytes_per_block)} of weights + {format_bytes(inp.cache_bytes_per_block)} of cache "
            f"for {inp.cache_tokens} tokens")


def _explain(inp: MemoryPlanInput, fit_blocks: int, num_blocks: int, limited_by: str) -> str:
    text = f"{_budget_sentence(inp)}; each block needs {_per_block_sentence(inp)} → {_plural(fit_blocks)}"
    if limited_by == "model size" and fit_blocks > num_blocks:
        text += f" fit, but the model has {_plural(num_blocks)} → hosting all of them"
    elif limited_by == "user cap":
        text += f" fit, but your limit is {_plural(num_blocks)} → hosting {_plural(num_blocks)}"
    return text


def _refusal(inp: MemoryPlanInput) -> str:
    return (f"needs {format_bytes(inp.per_block_total_bytes)} per block ({_per_block_sentence(inp)}) but only "
            f"{format_bytes(max(inp.usable_bytes, 0))} is usable ({_budget_sentence(inp)}); "
            f"free memory, lower the reserve or budget fewer cache tokens")


def _plural(n: int) -> str:
    return f"{n} block" if n == 1 else f"{n} blocks"
