"""`potluck demo` and `potluck --self-test`: a real swarm of local server processes on a built-in tiny model."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from potluck.core.cli.common import CliError, positive_int
from potluck.core.localswarm import LocalSwarm, split_blocks
from potluck.core.model.tiny import make_tiny_model

DEMO_LAYERS, DEMO_HIDDEN = 8, 256


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="a local 3-server swarm on a built-in tiny model: generate, show timings and route")
    p.add_argument("--servers", type=positive_int, default=3)
    p.add_argument("--prompt", default="Tell me a story about the sea")
    p.add_argument("--max-new-tokens", type=positive_int, default=24)
    p.add_argument("--arch", default="llama", help="llama, mistral, qwen2, bloom, …")
    p.set_defaults(handler=run_demo)


def _reference_ids(model_dir: Path, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy tokens from the plain transformers model on this machine: what the swarm must reproduce."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=None, pad_token_id=None)
    return out[0, len(prompt_ids):].tolist()


def _run(servers: int, arch: str, prompt: str, max_new_tokens: int, echo) -> tuple[object, list[int], float]:
    from potluck.core.client.model import DistributedModelForCausalLM
    with tempfile.TemporaryDirectory(prefix="potluck-demo-") as tmp:
        model_dir = make_tiny_model(arch, Path(tmp) / f"tiny-{arch}", layers=DEMO_LAYERS, hidden=DEMO_HIDDEN, seed=0)
        echo(f"built a tiny random-weight {arch} model ({DEMO_LAYERS} blocks, hidden {DEMO_HIDDEN}) in {model_dir}")
        began = time.perf_counter()
        with LocalSwarm(str(model_dir), split_blocks(DEMO_LAYERS, servers)) as swarm:
            echo(f"started {servers} servers on loopback in {time.perf_counter() - began:.1f} s:")
            for server, (start, end) in zip(swarm.servers, split_blocks(DEMO_LAYERS, servers)):
                echo(f"  blocks {start}-{end - 1}: {server.maddrs[0] if server.maddrs else '?'}")
            client = DistributedModelForCausalLM.from_pretrained(str(model_dir), initial_peers=swarm.initial_peers, timeout=10)
            try:
                prompt_ids = client.encode(prompt)
                echo(f"\nprompt: {prompt}\nreply:  ", end="")
                result = client.generate(prompt_ids, max_new_tokens=max_new_tokens, eos_token_id=None,
                                         on_token=lambda _id, text: echo(text, end=""))
                echo("")
            finally:
                client.shutdown()
        reference = _reference_ids(model_dir, prompt_ids, max_new_tokens)
    return result, reference, time.perf_counter() - began


def run_demo(args: argparse.Namespace) -> int:
    def echo(text: str, end: str = "\n") -> None:
        sys.stdout.write(text + end)
        sys.stdout.flush()

    if args.servers > DEMO_LAYERS:
        raise CliError(f"the demo model has {DEMO_LAYERS} blocks: use at most {DEMO_LAYERS} servers")
    result, reference, _ = _run(args.servers, args.arch, args.prompt, args.max_new_tokens, echo)
    steps_ms = [s * 1000 for s in result.step_seconds]
    echo("(the weights are random, so the words are too: the point is that every token crossed the swarm)")
    echo("\nroute: " + " -> ".join(f"blocks {h.start_block}-{h.end_block - 1} @ {h.peer_id[-8:]}" for h in result.route))
    echo(f"prefill: {result.prefill_seconds * 1000:.1f} ms for the prompt")
    if steps_ms:
        echo(f"per token: median {statistics.median(steps_ms):.1f} ms, min {min(steps_ms):.1f} ms, max {max(steps_ms):.1f} ms "
             f"over {len(steps_ms)} tokens ({result.tokens_per_second:.0f} tokens/s overall)")
        echo("per-token ms: " + " ".join(f"{ms:.1f}" for ms in steps_ms))
    same = result.token_ids == reference
    echo(f"identical to the whole model run locally with transformers: {'yes' if same else 'NO'}")
    return 0 if same else 1


def run_self_test(args: argparse.Namespace | None = None) -> int:
    """A 2-server swarm on the tiny model: generate greedily and compare with the local model. Exit 0 on success."""
    lines: list[str] = []
    try:
        result, reference, seconds = _run(2, "llama", "Hello", 12, lambda text, end="\n": lines.append(text + end))
    except Exception as e:  # the self-test reports any failure as a failed check, with the reason
        print("".join(lines))
        print(f"self-test FAILED: {type(e).__name__}: {e}")
        return 1
    ok = result.token_ids == reference and len(result.route) == 2
    print(f"self-test {'passed' if ok else 'FAILED'}: 2 servers, {len(result.token_ids)} tokens, route of {len(result.route)} "
          f"hops, output {'matches' if result.token_ids == reference else 'DIFFERS FROM'} the local model ({seconds:.1f} s)")
    return 0 if ok else 1
