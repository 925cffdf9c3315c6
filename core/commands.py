"""The CLI's sub-commands (see core/cli.py for their flags). Each returns an exit code."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

from potluck.core.cli import CliError, print_json


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from potluck.core.model.tiny import make_tiny_model

    try:
        out = make_tiny_model(args.arch, args.out, layers=args.layers, hidden=args.hidden, seed=args.seed, shard_size=args.shard_size)
    except ValueError as e:
        raise CliError(str(e)) from None
    print(f"wrote a tiny {args.arch} model ({args.layers} blocks, hidden {args.hidden}) to {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from potluck.core.model.loading import parse_dtype
    from potluck.core.server.runner import ServeOptions, serve_forever
    from potluck.core.server.server import ServerConfig
    from potluck.core.swarm.dht import DHTOptions

    if getattr(args, "swarm", None):  # a private swarm: peers, identity and admission come from its store entry
        if args.new_swarm or args.initial_peers or args.identity:
            raise CliError("--swarm finds its peers and identity itself: drop --new-swarm/--initial-peers/--identity")
        from potluck.core.swarm_serve import serve_in_swarm

        return serve_in_swarm(args)
    if not args.new_swarm and not args.initial_peers:
        raise CliError("give --initial-peers to join a swarm, or --new-swarm to start one")
    if not args.model:
        raise CliError("give --model (a model folder or Hugging Face id)")
    parse_dtype(args.dtype, args.device)  # refuse float16 on CPU before loading anything
    options = ServeOptions(
        model=args.model, blocks=args.blocks, num_blocks=args.num_blocks, dtype=args.dtype, device=args.device,
        revision=args.revision,
        dht=DHTOptions(initial_peers=tuple(args.initial_peers), host=args.host or "127.0.0.1", port=args.port, identity_path=args.identity,
                       announce_port=args.announce_port),
        server=ServerConfig(name=args.name, cache_tokens=args.cache_tokens, max_session_tokens=args.max_session_tokens,
                            announce_period_seconds=args.announce_period, record_ttl_seconds=3 * args.announce_period),
        reserve_bytes=int(args.reserve_gib * 2**30), resize=not args.no_resize,
    )

    serve_forever(options, print_ready)
    print("stopped", flush=True)
    return 0


def print_ready(server) -> None:
    """What `potluck serve` prints once it serves (LocalSwarm and the app read these lines)."""
    from potluck.core.swarm.dht import visible_maddrs

    print(f"serving blocks {server.stack.start}:{server.stack.end} of {server.spec.uid} "
          f"({server.throughput_tokens_per_second:.0f} tokens/s per block) as {server.peer_id}", flush=True)
    for maddr in visible_maddrs(server.dht):
        print(f"multiaddr {maddr}", flush=True)
    print("ready", flush=True)


def _sampling_kwargs(args: argparse.Namespace) -> dict:
    sampling = any(v is not None for v in (args.temperature, args.top_p, args.top_k, args.seed))
    if args.greedy and sampling:
        raise CliError("--greedy cannot be combined with --temperature/--top-p/--top-k/--seed")
    kwargs = dict(do_sample=sampling, repetition_penalty=args.repetition_penalty)
    if sampling:
        kwargs.update(temperature=args.temperature or 1.0, top_p=args.top_p or 1.0, top_k=args.top_k or 0, seed=args.seed)
    return kwargs


def cmd_generate(args: argparse.Namespace) -> int:
    from potluck.core.client.model import DistributedModelForCausalLM

    kwargs = _sampling_kwargs(args)
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
    steps = result.step_seconds
    if args.json:
        print_json({
            "token_ids": result.token_ids, "text": result.text, "stop_reason": result.stop_reason, "route": result.route,
            "prefill_seconds": round(result.prefill_seconds, 6),
            "step_seconds_median": round(statistics.median(steps), 6) if steps else None,
            "tokens_per_second": round(result.tokens_per_second, 3), "failovers": result.failovers,
        })
    else:
        print()
        print(f"-- {len(result.token_ids)} tokens, {result.tokens_per_second:.1f} tokens/s, stop: {result.stop_reason}")
        for hop in result.route:
            print(f"   blocks {hop['start_block']}-{hop['end_block'] - 1} on {hop['name'] or 'server'} ({hop['peer_id'][-8:]})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from potluck.core.swarm import dht as swarm_dht
    from potluck.core.swarm.status import status_json, status_text

    dht = swarm_dht.start_dht(swarm_dht.DHTOptions(initial_peers=tuple(args.initial_peers), client_mode=True))
    try:
        async def collect():
            models = await swarm_dht.fetch_models(dht)
            if args.model is not None:
                from potluck.core.model.checkpoint import open_checkpoint

                uid = args.model if args.model in models else open_checkpoint(args.model).uid
                models = {uid: models[uid]} if uid in models else {}
            return {uid: (n, await swarm_dht.fetch_records(dht, uid, range(n))) for uid, n in models.items()}

        found = asyncio.run(collect())
    finally:
        dht.shutdown()
    if args.json:
        print_json({"models": [status_json(uid, n, by_block) for uid, (n, by_block) in found.items()]})
    elif not found:
        print("no model is announced in this swarm right now")
    else:
        print("\n\n".join(status_text(uid, n, by_block) for uid, (n, by_block) in found.items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from potluck.core.demo import run_demo

    return run_demo(args.servers, args.prompt, args.max_new_tokens, args.arch)


def cmd_node(args: argparse.Namespace) -> int:
    from potluck.core.node.process import run_node  # says hello before it imports anything heavy; never returns

    return run_node(args.verbose)
