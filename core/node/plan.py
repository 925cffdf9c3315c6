"""How many blocks this PC hosts and why, in the words the GUI shows: the owner's memory cap on top of the engine's
sizing from free memory (core.server.sizing), and the explanation of the chosen range. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field

from potluck.core.errors import PotluckError
from potluck.core.node.stats import span_words
from potluck.core.numbers import format_bytes


class NodeSetupError(PotluckError):
    """Serving cannot start, and trying again will not help until the owner changes something.

    The message is plain words for the owner (it becomes the `failed` state's detail)."""


@dataclass(frozen=True)
class BlockPlan:
    num_blocks: int  # blocks to host
    explanation: str  # plain words: why this many
    numbers: dict = field(default_factory=dict)  # the figures behind it, units in the names


def _plural(n: int) -> str:
    return f"{n} block" if n == 1 else f"{n} blocks"


def apply_memory_cap(num_blocks: int, per_block_total_bytes: int, memory_cap_bytes: int) -> tuple[int, str]:
    """Blocks to host under the owner's cap, and the words to add to the explanation ('' when the cap changes
    nothing). A cap of 0 means no cap. Raises NodeSetupError when the cap is below what one block needs."""
    if memory_cap_bytes <= 0:
        return num_blocks, ""
    cap_blocks = memory_cap_bytes // max(1, per_block_total_bytes)
    if cap_blocks < 1:
        raise NodeSetupError(
            f"Your memory limit of {format_bytes(memory_cap_bytes)} is less than one block needs "
            f"({format_bytes(per_block_total_bytes)}). Raise it in Settings, or set it to 0 to decide from free "
            "memory.")
    if cap_blocks >= num_blocks:
        return num_blocks, ""
    return cap_blocks, (f"; your memory limit of {format_bytes(memory_cap_bytes)} allows {_plural(cap_blocks)} "
                        f"→ hosting {_plural(cap_blocks)}")


def plan_from_sizing(fit_blocks: int, per_block_total_bytes: int, memory_words: str, memory_cap_bytes: int,
                     free_bytes: int, usable_bytes: int) -> BlockPlan:
    """The plan from the engine's sizing decision (`fit_blocks` and its explanation) and the owner's cap."""
    num_blocks, cap_words = apply_memory_cap(fit_blocks, per_block_total_bytes, memory_cap_bytes)
    text = memory_words[:1].upper() + memory_words[1:] + cap_words
    numbers = {"free_memory_bytes": free_bytes, "usable_bytes": usable_bytes, "per_block_bytes": per_block_total_bytes}
    if memory_cap_bytes > 0:  # 0 means no cap: not a figure worth showing
        numbers["memory_cap_bytes"] = memory_cap_bytes
    return BlockPlan(num_blocks, text, numbers)


def chosen_plan(num_blocks: int) -> BlockPlan:
    """The plan when the owner fixed the number of blocks."""
    return BlockPlan(num_blocks, f"You asked for {_plural(num_blocks)}", {})


def range_words(plan: BlockPlan, start_block: int, end_block: int, total_blocks: int, others_serving: bool) -> str:
    """The full explanation: the plan's reasons, then which blocks and why those."""
    where = span_words(start_block, end_block)
    if end_block - start_block >= total_blocks:
        if plan.explanation.endswith("hosting all of them"):  # the engine's words said it already
            return f"{plan.explanation}."
        which = f"This PC hosts the whole model ({_plural(total_blocks)})."
    elif others_serving:
        which = f"This PC hosts {where} of {total_blocks}, where the swarm had the fewest servers."
    else:
        which = f"This PC hosts {where} of {total_blocks}; friends who join will host the rest."
    return f"{plan.explanation}. {which}"
