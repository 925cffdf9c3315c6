"""`potluck generate`: text through the swarm (or, with `--local`, the whole model in this process: the reference
the swarm is compared with; with `--swarm NAME`, a private swarm as this PC's member, see core/api/member.py),
streamed to the terminal, or one JSON object with `--json`."""

from __future__ import annotations

import argparse
import statistics
import sys

from potluck.core.api import member
from potluck.core.cli.common import CliError, positive_int, print_json, token_ids
from potluck.core.client.spot_checks import SpotCheckError

SWARM_HELP = ("a private swarm this PC is a member of (a name or id from `potluck swarms`): through this PC's "
              "running node of it, or else joined as the member")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate text through the swarm (or --local: in this process)")
    p.add_argument("--model", help="a model folder, a .gguf file or a Hugging Face id (with --swarm: default the "
                   "swarm's model)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--initial-peers", nargs="+", metavar="MADDR")
    where.add_argument("--swarm", metavar="NAME", help=SWARM_HELP)
    where.add_argument("--local", action="store_true", help="run the whole model in this process (the reference)")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt")
    prompt.add_argument("--prompt-ids", type=token_ids)
    p.add_argument("--chat", action="store_true", help="send --prompt as one user message through the model's chat "
                   "template")
    p.add_argument("--quant", choices=("none", "int8", "int4"), default=None, help="the weight precision: the "
                   "servers' to route through (default: the one they announce), or with --local how to run (default none)")
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
    p.add_argument("--dtype", default=None, help="through the swarm: hidden states on the wire (default float32); "
                   "with --local: what the blocks compute in (default auto, the checkpoint's own)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for any server before failing over")
    p.add_argument("--speculative", choices=("off", "lookup", "draft"), default="off", help="guess tokens and check "
                   "them in one pass through the swarm: lookup (from the prompt and the reply so far) or draft "
                   "(--draft-model); the same tokens, fewer trips")
    p.add_argument("--draft-model", default=None, help="a small local model sharing the tokenizer, for --speculative draft")
    p.add_argument("--draft-tokens", type=positive_int, default=8, help="most guesses per step (default 8, at most 16)")
    add_trust_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=generate)


def add_trust_flags(p: argparse.ArgumentParser) -> None:
    """--private and --spot-check-rate (generate and chat)."""
    p.add_argument("--private", action="store_true", help="keep the first and last blocks on this PC: friends' PCs "
                   "see neither the prompt's tokens nor the reply's logits (they still see hidden states, which can "
                   "be read back to text to a large extent: see SECURITY.md)")
    p.add_argument("--spot-check-rate", type=float, default=None, metavar="RATE", help="with --initial-peers: the "
                   "fraction of steps recomputed by other servers and compared, 0 to 1 (default 0.02); servers "
                   "caught computing wrong are avoided")


def sampling_kwargs(args: argparse.Namespace) -> dict:
    sampling = any(v is not None for v in (args.temperature, args.top_p, args.top_k, args.seed))
    if args.greedy and sampling:
        raise CliError("--greedy cannot be combined with --temperature/--top-p/--top-k/--seed")
    kwargs = dict(do_sample=sampling, repetition_penalty=args.repetition_penalty)
    if sampling:
        kwargs.update(temperature=args.temperature or 1.0, top_p=args.top_p or 1.0, top_k=args.top_k or 0, seed=args.seed)
    return kwargs


def open_model_for(args: argparse.Namespace):
    """The model `generate` talks to: the swarm's, the whole model in this process with --local, or with --swarm
    this PC's node of that swarm (a core.api.gateway.NodeClient) or the swarm joined as its member."""
    if getattr(args, "swarm", None):
        return member.open_swarm_model(args.swarm, model=args.model, quant=args.quant, timeout=args.timeout,
                                       push=not args.no_push, dtype=args.dtype or "float32")
    rate = getattr(args, "spot_check_rate", None)
    if rate is not None and not args.initial_peers:
        raise CliError("--spot-check-rate applies to --initial-peers (through a node, the node's own setting holds)")
    if not args.model:
        raise CliError("give --model (a model folder, a .gguf file or a Hugging Face id)")
    if args.local:
        from potluck.core.client.local import LocalModelForCausalLM

        return LocalModelForCausalLM.from_pretrained(args.model, dtype=args.dtype or "auto", quant=args.quant or "none")
    from potluck.core.client.model import DistributedModelForCausalLM

    checks = {} if rate is None else {"spot_check_rate": rate}
    try:
        return DistributedModelForCausalLM.from_pretrained(
            args.model, initial_peers=args.initial_peers, dtype=args.dtype or "float32", push=not args.no_push,
            timeout=args.timeout, quant=args.quant, **checks,
        )
    except SpotCheckError as e:
        raise CliError(f"--spot-check-rate: {e}") from None


def generate(args: argparse.Namespace) -> int:
    kwargs = sampling_kwargs(args)
    if args.chat and args.prompt is None:
        raise CliError("--chat sends --prompt as a user message: give --prompt")
    if (args.speculative == "draft") != (args.draft_model is not None):
        raise CliError("--speculative draft and --draft-model go together")
    if args.draft_tokens > 16:
        raise CliError("--draft-tokens is at most 16")
    model = open_model_for(args)
    if args.draft_model is not None:
        from potluck.core.client.local import load_draft_model

        model.draft_model = load_draft_model(args.draft_model)
    try:
        def stream(token_id: int, text: str) -> None:
            if not args.json:
                sys.stdout.write(text)
                sys.stdout.flush()

        prompt = dict(messages=[{"role": "user", "content": args.prompt}]) if args.chat else dict(prompt=args.prompt)
        if args.prompt is not None and not args.json and not args.chat:
            sys.stdout.write(args.prompt)
        eos = dict(eos_token_id=None) if args.no_eos else {}  # default: the model's own end of sequence
        result = model.generate(args.prompt_ids, **prompt, max_new_tokens=args.max_new_tokens, stop_strings=args.stop,
                                on_token=stream, speculative=args.speculative, draft_tokens=args.draft_tokens, **eos,
                                private=args.private, **kwargs)
    finally:
        model.shutdown()
    if args.json:
        print_json({**result_json(result), "compute": model.compute})
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
        "draft_proposed": result.draft_proposed, "draft_accepted": result.draft_accepted,
        "spot_checks": len(getattr(result, "spot_checks", ())),
        "suspects": sorted({p for c in getattr(result, "spot_checks", ()) for p in (getattr(c, "suspects", None) or ())}),
    }
