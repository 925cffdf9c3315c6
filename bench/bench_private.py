"""Private chats: what they cost in time, and what the middle servers can still read.

    python bench/bench_private.py             # ~4 min
    python bench/bench_private.py --quick     # fewer repetitions, no reading part

Cost: the built-in SmolLM2-135M-Instruct (30 blocks) on three `potluck serve` processes (blocks in three). The same
open question is answered (64 greedy tokens) plainly and with private=True (blocks 0 and 29 in the client, 1-28 on
the servers), taking turns; the figures are the time per token after the first (first to last token, over the
tokens between) and the prefill, medians over the repetitions, and whether the tokens are identical.

Reading: what a member serving middle blocks can infer, with no more than the public model and some text of its
own. (1) Prompt side: a linear map from the hidden state after k blocks to the token embeddings, fitted by least
squares on ~1,700 tokens of other text, then the nearest embedding, recovers this share of a held-out text's tokens.
(2) Reply side: the hidden state entering the last k blocks, through the final norm and the LM head ("logit lens"),
names the same next token as the whole model this often. Private mode keeps k = 1 at each end by default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

try:
    from bench import common
    from bench.builtin_swarm import builtin_swarm, timed
except ImportError:  # run as a script
    import common
    from builtin_swarm import builtin_swarm, timed

QUESTION = [{"role": "user", "content": "Write a short story about a cat who wants to learn to fly."}]
TEXT = Path(__file__).resolve().parents[1] / "tests" / "data" / "public_domain.txt"


def cost(reps: int, new_tokens: int, echo) -> dict:
    from potluck.core.localswarm import split_blocks

    times = {False: [], True: []}
    prefills = {False: [], True: []}
    identical, routes = True, {}
    with builtin_swarm(split_blocks(30, 3)) as connect:
        client = connect(spot_check_rate=0.0)
        for private in (False, True):  # warm-up (the private one loads blocks 0 and 29 here)
            client.generate(messages=QUESTION, max_new_tokens=4, private=private)
        plain_ids = None
        for rep in range(reps):
            for private in ((False, True) if rep % 2 == 0 else (True, False)):
                result, seconds = timed(client, QUESTION, new_tokens, private=private)
                times[private].append(seconds)
                prefills[private].append(result.prefill_seconds)
                routes[private] = [(h.name or h.peer_id[-6:], h.start_block, h.end_block) for h in result.route]
                plain_ids = plain_ids or (result.token_ids if not private else None)
                identical = identical and (plain_ids is None or result.token_ids == plain_ids)
    row = {"plain_ms_per_token": 1000 * statistics.median(times[False]),
           "private_ms_per_token": 1000 * statistics.median(times[True]),
           "plain_prefill_ms": 1000 * statistics.median(prefills[False]),
           "private_prefill_ms": 1000 * statistics.median(prefills[True]), "identical": identical}
    echo(f"per token: plain {row['plain_ms_per_token']:.1f} ms, private {row['private_ms_per_token']:.1f} ms "
         f"({row['private_ms_per_token'] / row['plain_ms_per_token']:.2f}x); prefill of the question: plain "
         f"{row['plain_prefill_ms']:.0f} ms, private {row['private_prefill_ms']:.0f} ms; identical tokens: {identical}")
    echo(f"  routes: plain {routes[False]}, private {routes[True]}")
    return row


def reading(echo) -> None:
    import torch

    from potluck.core.model.builtin import builtin_model_path
    from potluck.core.model.loading import load_blocks, load_client_parts, open_model
    from potluck.core.model.tokenizer import load_tokenizer

    spec = open_model(str(builtin_model_path()))
    parts = load_client_parts(spec, torch.float32)
    ids = load_tokenizer(spec.checkpoint)(TEXT.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    victim, own = ids[:300], ids[300:]
    stack = load_blocks(spec, 0, spec.num_blocks, torch.float32)
    depths = (1, 2, 4, 8, 12)

    def states(tokens: list[int]) -> list[torch.Tensor]:
        """Hidden states after 0, 1, ..., n blocks (one pass)."""
        with torch.inference_mode():
            hidden, out = parts.embed_ids(torch.tensor([tokens])).float(), []
            out.append(hidden[0])
            for b in range(spec.num_blocks):
                block = stack.subrange(b, b + 1)
                hidden = block(hidden, block.new_cache())
                out.append(hidden[0])
        return out

    embeddings = parts.embed_ids(torch.arange(spec.config.vocab_size)[None])[0].float()
    unit = embeddings / embeddings.norm(dim=-1, keepdim=True)
    train = [states(own[start : start + 256]) for start in range(0, len(own) - 1, 256)]
    targets = torch.tensor([t for start in range(0, len(own) - 1, 256) for t in own[start : start + 256][1:]])
    seen = states(victim)
    for depth in depths:
        x = torch.cat([s[depth][1:] for s in train])
        mean, scale = x.mean(0), x.std(0) + 1e-6
        xs = (x - mean) / scale
        weights = torch.linalg.solve(xs.T @ xs + torch.eye(xs.shape[1]), xs.T @ embeddings[targets])
        guess = ((seen[depth][1:] - mean) / scale) @ weights
        found = ((guess / guess.norm(dim=-1, keepdim=True)) @ unit.T).argmax(-1)
        share = (found == torch.tensor(victim[1:])).float().mean().item()
        echo(f"prompt side: after {depth:>2} block(s), a linear map fitted on {len(targets)} tokens of other text "
             f"recovers {share:.0%} of the tokens")
    with torch.inference_mode():
        final = parts.logits(seen[spec.num_blocks][:-1][None])[0].argmax(-1)
        for keep in (1, 2, 4, 8):
            lens = parts.logits(seen[spec.num_blocks - keep][:-1][None])[0].argmax(-1)
            echo(f"reply side: the state entering the last {keep} block(s) names the model's next token "
                 f"{(lens == final).float().mean():.0%} of the time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    common.set_thread_environment()
    echo = lambda text: print(text, flush=True)  # noqa: E731
    echo(common.machine_line(common.machine_info()))
    cost(2 if args.quick else args.reps, 32 if args.quick else args.new_tokens, echo)
    if not args.quick:
        reading(echo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
