"""Spot checks: how far honest results differ (the tolerances), what slips under them, and what checks cost.

    python bench/bench_spot_checks.py            # ~6 min
    python bench/bench_spot_checks.py --quick    # tolerances only (~1 min)

Tolerances: the built-in SmolLM2-135M-Instruct (30 blocks) in this process, at each compute the swarm may use. The
step a check recomputes differs from the session's own result because (a) the check replays the prefix in one
chunk where the session went token by token, and (b) another PC rounds differently: simulated by nudging the hidden
state at block 15 by 1e-7 of its size. The figures are core/client/checker.relative_error (max over tokens of the
relative L2 difference), worst over three prompts and several positions, against core/client/spot_checks'
tolerance.

What slips under: a server of blocks 10-19 adds a fixed direction of size e (relative to each hidden state) to its
outputs; the table shows the difference the check sees at the end of the model, whether the tolerance catches it,
and the share of 32-token greedy replies (8 prompts) it changed at all.

Cost: three `potluck serve` processes, blocks 0-14 on one and 15-29 on two (one replica to check against); a
64-token greedy reply with spot checks at rate 0, 0.05 and 1, taking turns: time per token after the first, and the
seconds of one check by the tokens it replays.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys

try:
    from bench import common
    from bench.builtin_swarm import builtin_swarm, timed
except ImportError:  # run as a script
    import common
    from builtin_swarm import builtin_swarm, timed

COMPUTES = (("float32", "float32", "none"), ("bfloat16", "bfloat16", "none"), ("float32+int8", "float32", "int8"),
            ("float32+int4", "float32", "int4"))
QUESTION = [{"role": "user", "content": "Explain how a rainbow forms, for a ten-year-old."}]


def tolerances(echo) -> None:
    import torch

    from potluck.core.client.checker import relative_error
    from potluck.core.client.private import split_compute
    from potluck.core.client.spot_checks import tolerance_for
    from potluck.core.model.builtin import builtin_model_path
    from potluck.core.model.loading import load_blocks, load_client_parts, open_model

    spec = open_model(str(builtin_model_path()))
    parts = load_client_parts(spec, torch.float32)
    rng = random.Random(0)
    prompts = [[rng.randrange(50, 40_000) for _ in range(n)] for n in (20, 60, 120)]
    echo(f"{'compute':<14}{'chunking':>10}{'1e-7 nudge':>12}{'tolerance':>11}{'margin':>8}")
    for name, dtype_name, _ in COMPUTES:
        dtype, quant = split_compute(name)
        stack = load_blocks(spec, 0, spec.num_blocks, dtype, quant=quant)
        first, rest = stack.subrange(0, 15), stack.subrange(15, spec.num_blocks)
        dtype = next(stack.parameters()).dtype
        chunking = nudge = 0.0
        with torch.inference_mode():
            for ids in prompts:
                embedded = parts.embed_ids(torch.tensor([ids])).to(dtype)
                half = len(ids) // 2
                cache = stack.new_cache()
                stack(embedded[:, :half], cache)
                steps = [stack(embedded[:, i : i + 1], cache).float() for i in range(half, len(ids))]
                for i in range(half, len(ids), 7):
                    replay = stack.new_cache()
                    stack(embedded[:, :i], replay)
                    chunking = max(chunking, relative_error(stack(embedded[:, i : i + 1], replay).float(), steps[i - half]))
                middle = first(embedded, first.new_cache()).float()
                clean = rest(middle.to(dtype), rest.new_cache()).float()
                noise = torch.randn(middle.shape, generator=torch.Generator().manual_seed(len(ids)))
                noise *= middle.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True) * 1e-7
                nudge = max(nudge, relative_error(rest((middle + noise).to(dtype), rest.new_cache()).float(), clean))
        tolerance = tolerance_for(name)
        echo(f"{name:<14}{chunking:>10.1e}{nudge:>12.1e}{tolerance:>11.0e}{tolerance / max(chunking, nudge):>7.0f}x")


def under_tolerance(echo) -> None:
    import torch

    from potluck.core.client.checker import relative_error
    from potluck.core.client.spot_checks import tolerance_for
    from potluck.core.model.builtin import builtin_model_path
    from potluck.core.model.loading import load_blocks, load_client_parts, open_model

    spec = open_model(str(builtin_model_path()))
    parts = load_client_parts(spec, torch.float32)
    stack = load_blocks(spec, 0, spec.num_blocks, torch.float32)
    head, liar, tail = stack.subrange(0, 10), stack.subrange(10, 20), stack.subrange(20, 30)
    direction = torch.randn(spec.hidden_size, generator=torch.Generator().manual_seed(5))
    direction /= direction.norm()
    rng = random.Random(1)
    prompts = [[rng.randrange(50, 40_000) for _ in range(12)] for _ in range(8)]

    def reply(prompt: list[int], size: float) -> tuple[list[int], torch.Tensor]:
        caches = [head.new_cache(), liar.new_cache(), tail.new_cache()]
        ids, tokens, first_out = torch.tensor([prompt]), [], None
        with torch.inference_mode():
            for _ in range(32):
                hidden = liar(head(parts.embed_ids(ids), caches[0]), caches[1])
                hidden = hidden + size * hidden.norm(dim=-1, keepdim=True) * direction
                out = tail(hidden, caches[2])
                first_out = out if first_out is None else first_out
                tokens.append(int(parts.logits(out[:, -1:])[0, -1].argmax()))
                ids = torch.tensor([[tokens[-1]]])
        return tokens, first_out

    clean = [reply(p, 0.0) for p in prompts]
    echo(f"{'added':>8}{'seen at the end':>17}{'float32 check':>15}{'bfloat16/int4 check':>21}{'replies changed':>17}")
    for size in (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3):
        runs = [reply(p, size) for p in prompts]
        seen = max(relative_error(out, c[1]) for (_, out), c in zip(runs, clean))
        changed = sum(tokens != c[0] for (tokens, _), c in zip(runs, clean)) / len(prompts)
        caught = lambda compute: "caught" if seen > tolerance_for(compute) else "passes"  # noqa: E731
        echo(f"{size:>8.0e}{seen:>17.1e}{caught('float32'):>15}{caught('bfloat16'):>21}{changed:>16.0%}")


def cost(reps: int, echo) -> None:
    with builtin_swarm([(0, 15), (15, 30), (15, 30)]) as connect:
        client = connect(spot_check_rate=0.0)
        client.generate(messages=QUESTION, max_new_tokens=4)  # warm-up
        times: dict[float, list[float]] = {0.0: [], 0.05: [], 1.0: []}
        checks = []
        for rep in range(reps):
            for rate in (list(times) if rep % 2 == 0 else list(times)[::-1]):
                client.spot_checks = type(client.spot_checks)(rate, seed=rep)
                result, seconds = timed(client, QUESTION, 64)
                times[rate].append(seconds)
                checks += [(c.position + c.tokens, c.seconds) for c in result.spot_checks if c.passed]
                assert all(c.passed for c in result.spot_checks), "an honest server failed a check"
        base = statistics.median(times[0.0])
        for rate, values in times.items():
            echo(f"spot checks at rate {rate:g}: {1000 * statistics.median(values):.1f} ms per token "
                 f"({statistics.median(values) / base:.2f}x)")
        for low, high in ((0, 64), (64, 96), (96, 1 << 30)):
            picked = [s for tokens, s in checks if low < tokens <= high]
            if picked:
                echo(f"one check replaying {low + 1}-{min(high, max(t for t, _ in checks))} tokens: "
                     f"{1000 * statistics.median(picked):.0f} ms (median of {len(picked)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    common.set_thread_environment()
    echo = lambda text: print(text, flush=True)  # noqa: E731
    echo(common.machine_line(common.machine_info()))
    tolerances(echo)
    if not args.quick:
        under_tolerance(echo)
        cost(args.reps, echo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
