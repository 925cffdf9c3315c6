"""`potluck demo` and `potluck --self-test`: a real swarm of local server processes.

The demo asks the built-in real model (SmolLM2-135M-Instruct, core/model/builtin.py) a question through 3 servers
and prints the answer, the route, the timings, and whether it equals the same model run in this process. The
self-test runs 2 servers of a tiny random-weight model (quick; what an installed app checks itself with).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from potluck.core.cli.common import CliError, positive_int
from potluck.core.localswarm import LocalSwarm, split_blocks
from potluck.core.model.builtin import NAME as BUILTIN_NAME
from potluck.core.model.builtin import builtin_model_path
from potluck.core.model.tiny import make_tiny_model

SELF_TEST_LAYERS, SELF_TEST_HIDDEN = 8, 256
DEMO_QUESTION = "What is the capital of France?"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=f"ask the built-in {BUILTIN_NAME} a question through a local 3-server swarm")
    p.add_argument("--servers", type=positive_int, default=3)
    p.add_argument("--question", default=DEMO_QUESTION)
    p.add_argument("--max-new-tokens", type=positive_int, default=32)
    p.add_argument("--model", default=None, help="another model folder or .gguf file (default: the built-in one)")
    p.add_argument("--quant", choices=("none", "int8", "int4"), default="none", help="the servers' weight precision")
    p.set_defaults(handler=run_demo)


def _echo(text: str, end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def run_demo(args: argparse.Namespace) -> int:
    from potluck.core.client.local import LocalModelForCausalLM
    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.model.loading import open_model

    model = args.model or str(builtin_model_path())
    num_blocks = open_model(model).num_blocks
    if args.servers > num_blocks:
        raise CliError(f"the model has {num_blocks} blocks: use at most {num_blocks} servers")
    ranges = split_blocks(num_blocks, args.servers)
    messages = [{"role": "user", "content": args.question}]
    _echo(f"model: {model if args.model else BUILTIN_NAME + ' (built in)'}, {num_blocks} blocks, weights at {args.quant}")
    began = time.perf_counter()
    with LocalSwarm(model, ranges, dtype="auto", extra_args=["--quant", args.quant]) as swarm:
        _echo(f"started {args.servers} servers on loopback in {time.perf_counter() - began:.1f} s:")
        for server, (start, end) in zip(swarm.servers, ranges):
            _echo(f"  blocks {start}-{end - 1}: {server.maddrs[0] if server.maddrs else '?'}")
        began = time.perf_counter()
        client = DistributedModelForCausalLM.from_pretrained(model, initial_peers=swarm.initial_peers, timeout=20)
        _echo(f"client connected in {time.perf_counter() - began:.1f} s\n\nquestion: {args.question}\nanswer:   ", end="")
        try:
            result = client.generate(messages=messages, max_new_tokens=args.max_new_tokens,
                                     on_token=lambda _id, text: _echo(text, end=""))
        finally:
            client.shutdown()
    _echo("")
    _report(result)
    local = LocalModelForCausalLM.from_pretrained(model, quant=args.quant)
    reference = local.generate(messages=messages, max_new_tokens=args.max_new_tokens)
    same = result.token_ids == reference.token_ids
    _echo(f"identical to the same model run in this process ({local.compute}): {'yes' if same else 'NO'}")
    return 0 if same else 1


def _report(result) -> None:
    steps_ms = [s * 1000 for s in result.step_seconds]
    _echo("route: " + " -> ".join(f"blocks {h.start_block}-{h.end_block - 1} @ {h.peer_id[-8:]}" for h in result.route))
    _echo(f"prefill: {result.prefill_seconds * 1000:.1f} ms for {result.prompt_tokens} prompt tokens")
    if steps_ms:
        _echo(f"per token: median {statistics.median(steps_ms):.1f} ms, min {min(steps_ms):.1f} ms, "
              f"max {max(steps_ms):.1f} ms over {len(steps_ms)} tokens ({result.tokens_per_second:.1f} tokens/s)")


def run_self_test(args: argparse.Namespace | None = None) -> int:
    """A 2-server swarm on a tiny model: generate greedily and compare with the local model. Exit 0 on success."""
    from potluck.core.client.local import LocalModelForCausalLM
    from potluck.core.client.model import DistributedModelForCausalLM

    began = time.perf_counter()
    prompt = [5, 17, 33, 2, 40]
    try:
        with tempfile.TemporaryDirectory(prefix="potluck-self-test-") as tmp:
            model = str(make_tiny_model("llama", Path(tmp) / "tiny", layers=SELF_TEST_LAYERS, hidden=SELF_TEST_HIDDEN))
            with LocalSwarm(model, split_blocks(SELF_TEST_LAYERS, 2), dtype="auto") as swarm:
                client = DistributedModelForCausalLM.from_pretrained(model, initial_peers=swarm.initial_peers, timeout=10)
                try:
                    result = client.generate(prompt, max_new_tokens=12, eos_token_id=None)
                finally:
                    client.shutdown()
            reference = LocalModelForCausalLM.from_pretrained(model).generate(prompt, max_new_tokens=12, eos_token_id=None)
    except Exception as e:  # the self-test reports any failure as a failed check, with the reason
        print(f"self-test FAILED: {type(e).__name__}: {e}")
        return 1
    same = result.token_ids == reference.token_ids
    ok = same and len(result.route) == 2
    print(f"self-test {'passed' if ok else 'FAILED'}: 2 servers, {len(result.token_ids)} tokens, route of "
          f"{len(result.route)} hops, output {'matches' if same else 'DIFFERS FROM'} the local model "
          f"({time.perf_counter() - began:.1f} s)")
    return 0 if ok else 1
