"""Should replies guess ahead by default? Prompt lookup against plain decoding on open chat (little to copy).

    python bench/bench_lookup_default.py                 # loopback, ~5 min
    python bench/bench_lookup_default.py --delay-ms 10   # every link 10 ms slower each way

The built-in SmolLM2-135M-Instruct on three `potluck serve` processes (blocks in three), asked open questions whose
replies copy little from the prompt: the case where guesses are mostly wrong and lookup can only lose. Each reply
(greedy, and sampled as the app samples: temperature 0.7, top-p 0.9, top-k 50, a fixed seed) is generated with
speculative decoding off and with lookup, taking turns; the figure is the time per token after the first (first
to last token, over the tokens between), median over prompts and repetitions, and the ratio lookup / off per run.
Greedy runs are also checked identical. Loopback is lookup's worst case: a wrong guess costs compute on every
server and saves no link latency.
"""

from __future__ import annotations

import argparse
import statistics
import sys

try:
    from bench import common
    from bench.builtin_swarm import builtin_swarm, timed
except ImportError:  # run as a script
    import common
    from builtin_swarm import builtin_swarm, timed

QUESTIONS = ["Write a short story about a cat who wants to learn to fly.",
             "What are three good habits for staying healthy in winter?",
             "Explain how a rainbow forms, for a ten-year-old.",
             "Give me an idea for a birthday present for my grandmother, and say why."]
SAMPLED = dict(do_sample=True, temperature=0.7, top_p=0.9, top_k=50)


def run(reps: int, new_tokens: int, delay_ms: float, echo) -> list[dict]:
    from potluck.core.localswarm import split_blocks

    rows = []
    with builtin_swarm(split_blocks(30, 3), delay_ms) as connect:
        client = connect(spot_check_rate=0.0)
        client.generate(messages=[{"role": "user", "content": "Hi"}], max_new_tokens=4)  # warm-up
        for sampling_name, sampling in (("greedy", {}), ("sampled", SAMPLED)):
            ratios, off_times, lookup_times, proposed, accepted, same = [], [], [], 0, 0, True
            for rep in range(reps):
                for i, question in enumerate(QUESTIONS):
                    messages = [{"role": "user", "content": question}]
                    seed = dict(seed=100 * rep + i) if sampling else {}
                    times = {}
                    for mode in (("off", "lookup") if (rep + i) % 2 == 0 else ("lookup", "off")):
                        result, seconds = timed(client, messages, new_tokens, speculative=mode, **sampling, **seed)
                        times[mode] = (result, seconds)
                    off, look = times["off"], times["lookup"]
                    ratios.append(look[1] / off[1])
                    off_times.append(off[1])
                    lookup_times.append(look[1])
                    proposed += look[0].draft_proposed
                    accepted += look[0].draft_accepted
                    same = same and (bool(sampling) or look[0].token_ids == off[0].token_ids)
            row = {"sampling": sampling_name, "delay_ms": delay_ms, "off_ms_per_token": 1000 * statistics.median(off_times),
                   "lookup_ms_per_token": 1000 * statistics.median(lookup_times),
                   "ratio_median": statistics.median(ratios), "ratio_worst": max(ratios), "ratio_best": min(ratios),
                   "proposed": proposed, "accepted": accepted, "greedy_identical": same}
            rows.append(row)
            echo(f"{sampling_name:>7}, {delay_ms:g} ms links: off {row['off_ms_per_token']:.1f} ms/token, lookup "
                 f"{row['lookup_ms_per_token']:.1f} ms/token; lookup/off per run: median {row['ratio_median']:.2f}, "
                 f"worst {row['ratio_worst']:.2f}, best {row['ratio_best']:.2f}; {accepted}/{proposed} guesses kept"
                 + ("" if sampling else f"; identical tokens: {same}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    common.set_thread_environment()
    print(common.machine_line(common.machine_info()), flush=True)
    run(args.reps, args.new_tokens, args.delay_ms, lambda text: print(text, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
