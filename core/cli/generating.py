"""`potluck generate`: text through the swarm, streamed to the terminal, or one JSON object with `--json`."""

from __future__ import annotations

import argparse
import statistics
import sys

from potluck.core.cli.common import CliError, positive_int, print_json, token_ids


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate text through the swarm")
    p.add_argument("--model", required=True)
    p.add_argument("--initial-peers", nargs="+", required=True, metavar="MADDR")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt")
    prompt.add_argument("--prompt-ids", type=token_ids)
    p.add_argument("--max-new-tokens", type=positive_int, default=32)
    p.add_argument("--greedy", action="store_true", help="always pick the likeliest token (the default without sampling options)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--stop", nargs="*", default=[], metavar="TEXT", help="stop when any of these strings appears")
    p.add_argument("--no-eos", action="store_true", help="do not stop at the end-of-sequence token")
    p.add_argument("--no-push", action="store_true", help="relay every hop through the client instead of server-to-server push")
    p.add_argument("--dtype", default="float32", help="dtype of hidden states on the wire")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for any server before failing over")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=generate)


def sampling_kwargs(args: argparse.Namespace) -> dict:
    sampling = any(v is not None for v in (args.temperature, args.top_p, args.top_k, args.seed))
    if args.greedy and sampling:
        raise CliError("--greedy cannot be combined with --temperature/--top-p/--top-k/--seed")
    kwargs = dict(do_sample=sampling, repetition_penalty=args.repetition_penalty)
    if sampling:
        kwargs.update(temperature=args.temperature or 1.0, top_p=args.top_p or 1.0, top_k=args.top_k or 0, seed=args.seed)
    return kwargs


def generate(args: argparse.Namespace) -> int:
    from potluck.core.client.model import DistributedModelForCausalLM

    kwargs = sampling_kwargs(args)
    model = DistributedModelForCausalLM.from_pretrained(
        args.model, initial_peers=args.initial_peers, dtype=args.dtype, push=not args.no_push, timeout=args.timeout,
    )
    try:
        def stream(token_id: int, text: str) -> None:
            if not args.json:
                sys.stdout.write(text)
                sys.stdout.flush()

        if args.prompt is not None and not args.json:
            sys.stdout.write(args.prompt)
        result = model.generate(
            args.prompt_ids, prompt=args.prompt, max_new_tokens=args.max_new_tokens, stop_strings=args.stop,
            eos_token_id=None if args.no_eos else model.spec.config.eos_token_id, on_token=stream, **kwargs,
        )
    finally:
        model.shutdown()
    if args.json:
        print_json(result_json(result))
    else:
        print()
        print(f"-- {len(result.token_ids)} tokens, {result.tokens_per_second:.1f} tokens/s, stop: {result.stop_reason.value}")
        for hop in result.route:
            print(f"   blocks {hop.start_block}-{hop.end_block - 1} on {hop.name or 'server'} ({hop.peer_id[-8:]})")
    return 0


def result_json(result) -> dict:
    """A GenerationResult as the `--json` object."""
    steps = result.step_seconds
    return {
        "token_ids": result.token_ids, "text": result.text, "stop_reason": result.stop_reason.value,
        "route": [{"peer_id": h.peer_id, "name": h.name, "start_block": h.start_block, "end_block": h.end_block}
                  for h in result.route],
        "prefill_seconds": round(result.prefill_seconds, 6),
        "step_seconds_median": round(statistics.median(steps), 6) if steps else None,
        "tokens_per_second": round(result.tokens_per_second, 3), "failovers": len(result.failovers),
    }
