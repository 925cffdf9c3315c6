import dataclasses

import pytest

from potluck.core.numbers import GIB, KIB, MIB, format_bytes
from potluck.core.server.sizing import MemoryPlanInput, SizingError, blocks_to_grow, blocks_to_shed, plan_num_blocks

# Small round numbers: 300 bytes of weights + 1 byte/token * 100 tokens of cache = 400 bytes per block.
PER_BLOCK = 400


def plan_input(**overrides) -> MemoryPlanInput:
    fields = dict(device="cuda", free_bytes=10_000, bytes_per_block=300, cache_bytes_per_token_per_block=1,
                  cache_tokens=100, workspace_bytes=500, reserve_bytes=1_500, max_blocks=100, user_cap_blocks=None)
    fields.update(overrides)
    return MemoryPlanInput(**fields)


@pytest.mark.parametrize(
    "free, reserve, workspace, max_blocks, cap, expected_blocks, expected_limit",
    [
        # usable = free - reserve - workspace; blocks = usable // 400
        (2_000 + 3 * PER_BLOCK, 1_500, 500, 100, None, 3, "memory"),  # exactly three blocks
        (2_000 + 3 * PER_BLOCK - 1, 1_500, 500, 100, None, 2, "memory"),  # one byte short of three
        (2_000 + 3 * PER_BLOCK + PER_BLOCK - 1, 1_500, 500, 100, None, 3, "memory"),  # one byte short of four
        (2_000 + PER_BLOCK, 1_500, 500, 100, None, 1, "memory"),  # exactly one block
        (PER_BLOCK, 0, 0, 100, None, 1, "memory"),  # no reserve, no workspace
        (2_000 + 50 * PER_BLOCK, 1_500, 500, 8, None, 8, "model size"),  # room for more than the model has
        (2_000 + 8 * PER_BLOCK, 1_500, 500, 8, None, 8, "model size"),  # memory fits the model exactly
        (2_000 + 50 * PER_BLOCK, 1_500, 500, 100, 4, 4, "user cap"),
        (2_000 + 4 * PER_BLOCK, 1_500, 500, 100, 4, 4, "memory"),  # cap and memory equally tight
        (2_000 + 8 * PER_BLOCK, 1_500, 500, 8, 8, 8, "model size"),  # all three equally tight
        (2_000 + 50 * PER_BLOCK, 1_500, 500, 8, 20, 8, "model size"),  # cap above the model's size
        (2_000 + 3 * PER_BLOCK, 1_500, 500, 100, 5, 3, "memory"),  # cap looser than memory
    ],
)
def test_plan_num_blocks(free, reserve, workspace, max_blocks, cap, expected_blocks, expected_limit):
    inp = plan_input(free_bytes=free, reserve_bytes=reserve, workspace_bytes=workspace, max_blocks=max_blocks,
                     user_cap_blocks=cap)
    decision = plan_num_blocks(inp)
    assert (decision.num_blocks, decision.limited_by) == (expected_blocks, expected_limit)
    assert decision.usable_bytes == free - reserve - workspace
    assert decision.per_block_total_bytes == PER_BLOCK


@pytest.mark.parametrize(
    "overrides, expected_per_block",
    [
        (dict(cache_tokens=0), 300),  # no cache budget: weights only
        (dict(cache_bytes_per_token_per_block=0), 300),
        (dict(cache_bytes_per_token_per_block=4, cache_tokens=2048), 300 + 8192),
    ],
)
def test_per_block_includes_cache_budget(overrides, expected_per_block):
    decision = plan_num_blocks(plan_input(free_bytes=10**9, **overrides))
    assert decision.per_block_total_bytes == expected_per_block


@pytest.mark.parametrize(
    "free, reserve, workspace, shown_usable",
    [
        (2_000 + PER_BLOCK - 1, 1_500, 500, "399 bytes"),  # one byte short of one block
        (2_000, 1_500, 500, "0 bytes"),  # reserve and workspace take everything
        (1_000, 1_500, 500, "0 bytes"),  # reserve alone exceeds free memory: never shown negative
        (0, 0, 0, "0 bytes"),
    ],
)
def test_refuses_when_no_block_fits(free, reserve, workspace, shown_usable):
    inp = plan_input(free_bytes=free, reserve_bytes=reserve, workspace_bytes=workspace)
    with pytest.raises(SizingError) as info:
        plan_num_blocks(inp)
    message = str(info.value)
    assert message.startswith(f"needs 400 bytes per block (300 bytes of weights + 100 bytes of cache for 100 tokens) "
                              f"but only {shown_usable} is usable")
    assert "lower the reserve" in message


def test_explanation_reads_like_the_dashboard_line():
    inp = MemoryPlanInput(
        device="cuda", free_bytes=int(7.8 * GIB), bytes_per_block=int(0.41 * GIB),
        cache_bytes_per_token_per_block=int(0.13 * GIB) // 2048, cache_tokens=2048,
        workspace_bytes=GIB // 2, reserve_bytes=GIB, max_blocks=32,
    )
    decision = plan_num_blocks(inp)
    assert decision.num_blocks == 11
    assert decision.explanation == (
        "7.8 GiB free on the GPU − 1.0 GiB reserve − 0.50 GiB workspace leaves 6.3 GiB; each block needs "
        "0.41 GiB of weights + 0.13 GiB of cache for 2048 tokens → 11 blocks"
    )
    capped = plan_num_blocks(dataclasses.replace(inp, user_cap_blocks=4)).explanation
    assert capped.endswith("→ 11 blocks fit, but your limit is 4 blocks → hosting 4 blocks")
    small_model = plan_num_blocks(dataclasses.replace(inp, max_blocks=1)).explanation
    assert small_model.endswith("→ 11 blocks fit, but the model has 1 block → hosting all of them")
    cpu = plan_num_blocks(dataclasses.replace(inp, device="cpu")).explanation
    assert cpu.startswith("7.8 GiB of RAM available − 1.0 GiB reserve")


def test_refusal_in_gib():
    inp = MemoryPlanInput(
        device="cpu", free_bytes=int(1.81 * GIB), bytes_per_block=int(0.41 * GIB),
        cache_bytes_per_token_per_block=int(0.13 * GIB) // 2048, cache_tokens=2048,
        workspace_bytes=GIB // 2, reserve_bytes=GIB, max_blocks=32,
    )
    with pytest.raises(SizingError, match=r"^needs 0.54 GiB per block .* but only 0.31 GiB is usable "):
        plan_num_blocks(inp)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(device="gpu"), "device must be one of"),
        (dict(device="CUDA"), "device must be one of"),
        (dict(free_bytes=-1), "free_bytes must be >= 0"),
        (dict(free_bytes=1.5), "free_bytes must be an integer"),
        (dict(free_bytes=True), "free_bytes must be an integer"),
        (dict(bytes_per_block=0), "bytes_per_block must be >= 1"),
        (dict(cache_bytes_per_token_per_block=-4), "cache_bytes_per_token_per_block must be >= 0"),
        (dict(cache_tokens=-1), "cache_tokens must be >= 0"),
        (dict(workspace_bytes=-1), "workspace_bytes must be >= 0"),
        (dict(reserve_bytes=None), "reserve_bytes must be an integer"),
        (dict(max_blocks=0), "max_blocks must be >= 1"),
        (dict(user_cap_blocks=0), "user_cap_blocks must be >= 1"),
        (dict(user_cap_blocks=2.0), "user_cap_blocks must be an integer"),
    ],
)
def test_bad_plan_input(overrides, message):
    with pytest.raises(ValueError, match=message):
        plan_input(**overrides)


def test_sizing_error_is_not_a_value_error():
    # the caller tells "does not fit" (for the owner) apart from a programming error
    assert not issubclass(SizingError, ValueError)


@pytest.mark.parametrize(
    "num_bytes, text",
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (KIB, "1.0 KiB"),
        (MIB - 1, "1024.0 KiB"),
        (MIB, "1.0 MiB"),
        (100 * MIB - MIB, "99.0 MiB"),
        (100 * MIB, "0.10 GiB"),
        (int(0.41 * GIB), "0.41 GiB"),
        (GIB, "1.0 GiB"),
        (int(7.8 * GIB), "7.8 GiB"),
        (-2 * GIB, "-2.0 GiB"),
        (141 * GIB, "141 GiB"),
    ],
)
def test_format_bytes(num_bytes, text):
    assert format_bytes(num_bytes) == text


@pytest.mark.parametrize(
    "current, free, reserve, per_block, expected",
    [
        (4, 1_000, 1_000, 100, 0),  # exactly at the reserve: keep everything
        (4, 5_000, 1_000, 100, 0),
        (4, 999, 1_000, 100, 1),  # one byte short: one block
        (4, 900, 1_000, 100, 1),  # exactly one block short
        (4, 899, 1_000, 100, 2),  # one byte more than one block short
        (4, 700, 1_000, 100, 3),
        (4, 0, 1_000, 100, 4),  # more than everything we hold: shed all (caller pauses)
        (0, 0, 1_000, 100, 0),  # nothing to shed
    ],
)
def test_blocks_to_shed(current, free, reserve, per_block, expected):
    assert blocks_to_shed(current, free, reserve, per_block) == expected


@pytest.mark.parametrize(
    "current, free, reserve, per_block, max_blocks, margin, cap, expected",
    [
        (4, 1_000 + 100 + 50, 1_000, 100, 32, 50, None, 1),  # exactly reserve + block + margin
        (4, 1_000 + 100 + 50 - 1, 1_000, 100, 32, 50, None, 0),  # one byte short
        (4, 1_000 + 100 + 49, 1_000, 100, 32, None, None, 0),  # default margin is half a block (50)
        (4, 1_000 + 100 + 50, 1_000, 100, 32, None, None, 1),
        (4, 1_000 + 100, 1_000, 100, 32, 0, None, 1),  # no margin asked for
        (4, 1_000 + 350 + 50, 1_000, 100, 32, 50, None, 3),
        (4, 1_000 + 399 + 50, 1_000, 100, 32, 50, None, 3),
        (4, 10**9, 1_000, 100, 32, 50, None, 28),  # model size bounds growth
        (32, 10**9, 1_000, 100, 32, 50, None, 0),  # already hosting the whole model
        (4, 10**9, 1_000, 100, 32, 50, 6, 2),  # user cap bounds growth
        (6, 10**9, 1_000, 100, 32, 50, 4, 0),  # cap lowered below what we hold: never "grow" negative
        (0, 1_000 + 150, 1_000, 100, 32, 50, None, 1),  # paused server may come back
        (4, 500, 1_000, 100, 32, 50, None, 0),  # below the reserve
    ],
)
def test_blocks_to_grow(current, free, reserve, per_block, max_blocks, margin, cap, expected):
    got = blocks_to_grow(current, free, reserve, per_block, max_blocks, margin_bytes=margin, user_cap_blocks=cap)
    assert got == expected


@pytest.mark.parametrize("shortfall", [1, 99, 100, 101, 250, 399, 400])
@pytest.mark.parametrize("margin", [0, 1, 50])
def test_no_flapping_right_after_shedding(shortfall, margin):
    reserve, per_block = 1_000, 100
    free = reserve - shortfall
    shed = blocks_to_shed(8, free, reserve, per_block)
    free_after = free + shed * per_block
    assert free_after >= reserve
    assert blocks_to_grow(8 - shed, free_after, reserve, per_block, 32, margin_bytes=margin) == 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: blocks_to_shed(-1, 0, 0, 1), "current_blocks must be >= 0"),
        (lambda: blocks_to_shed(1, -1, 0, 1), "free_bytes_now must be >= 0"),
        (lambda: blocks_to_shed(1, 0, -5, 1), "reserve_bytes must be >= 0"),
        (lambda: blocks_to_shed(1, 0, 0, 0), "per_block_total_bytes must be >= 1"),
        (lambda: blocks_to_shed(1, 0.5, 0, 1), "free_bytes_now must be an integer"),
        (lambda: blocks_to_grow(1, 0, 0, 0, 4), "per_block_total_bytes must be >= 1"),
        (lambda: blocks_to_grow(1, 0, 0, 1, 0), "max_blocks must be >= 1"),
        (lambda: blocks_to_grow(5, 0, 0, 1, 4), r"current_blocks \(5\) exceeds max_blocks \(4\)"),
        (lambda: blocks_to_grow(1, 0, 0, 1, 4, margin_bytes=-1), "margin_bytes must be >= 0"),
        (lambda: blocks_to_grow(1, 0, 0, 1, 4, user_cap_blocks=0), "user_cap_blocks must be >= 1"),
    ],
)
def test_bad_resize_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
