"""Memory, speed and quality per precision, through Potluck's own loader (what a server holds and computes).

    python bench/bench_quality.py            # SmolLM2-135M-Instruct (built in) and a mid-size random model
    python bench/bench_quality.py --quick    # fewer tokens and repeats

For each precision (none = float32, int8, int4), in one process, variants taking turns:
- blocks' bytes (parameters + buffers actually held) against float32;
- decode step of the whole stack (one token on a warm cache), median of repeats, against float32;
- on tests/data/public_domain.txt (about 2,000 SmolLM2 tokens, fed whole with teacher forcing): perplexity, the
  share of positions whose next-token argmax equals float32's, and the mean KL divergence from float32.
The mid model (hidden 1024, 16 blocks, random weights) gives the per-block decode ratio of the issue's target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "tests" / "data" / "public_domain.txt"
PRECISIONS = ("none", "int8", "int4")


def held_bytes(stack) -> int:
    return sum(t.numel() * t.element_size() for t in [*stack.parameters(), *stack.buffers()])


def decode_ms(stack, hidden_size: int, repeats: int, context: int = 64) -> list[float]:
    import torch

    cache = stack.new_cache()
    with torch.inference_mode():
        stack(torch.randn(1, context, hidden_size), cache)
        times = []
        for i in range(repeats):
            x = torch.randn(1, 1, hidden_size)
            began = time.perf_counter()
            stack(x, cache)
            times.append((time.perf_counter() - began) * 1000)
            stack.rollback(cache, context)
    return times


def teacher_forced(stack, parts, ids: list[int], chunk: int = 256):
    """Log-probabilities of every next token, feeding the text in chunks through one session cache."""
    import torch

    cache = stack.new_cache()
    logps = []
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, chunk):
            piece = torch.tensor([ids[start : min(start + chunk, len(ids) - 1)]])
            out = stack(parts.embed_ids(piece), cache)
            logps.append(torch.log_softmax(parts.logits(out)[0].float(), dim=-1))
    return torch.cat(logps)


def quality(model: str, max_tokens: int) -> dict:
    import torch

    from potluck.core.model.loading import load_blocks, load_client_parts, open_model
    from potluck.core.model.tokenizer import load_tokenizer

    spec = open_model(model)
    ids = load_tokenizer(spec.checkpoint)(TEXT.read_text())["input_ids"][:max_tokens]
    parts = load_client_parts(spec)
    targets = torch.tensor(ids[1:])
    out, reference = {}, None
    for precision in PRECISIONS:
        stack = load_blocks(spec, 0, spec.num_blocks, torch.float32, quant=precision)
        logp = teacher_forced(stack, parts, ids)
        nll = -logp[torch.arange(len(targets)), targets]
        row = {"tokens": len(ids), "perplexity": float(torch.exp(nll.mean()))}
        if reference is None:
            reference = logp
        else:
            row["agreement"] = float((logp.argmax(-1) == reference.argmax(-1)).float().mean())
            row["kl"] = float((reference.exp() * (reference - logp)).sum(-1).mean())
        out[precision] = row
    return out


def speed_and_memory(model: str, repeats: int, rounds: int) -> dict:
    import torch

    from potluck.core.model.loading import load_blocks, open_model

    spec = open_model(model)
    stacks = {p: load_blocks(spec, 0, spec.num_blocks, torch.float32, quant=p) for p in PRECISIONS}
    times = {p: [] for p in PRECISIONS}
    for _ in range(rounds):  # variants take turns, so a busy moment hurts all of them alike
        for p, stack in stacks.items():
            times[p] += decode_ms(stack, spec.hidden_size, repeats)
    base_ms, base_bytes = statistics.median(times["none"]), held_bytes(stacks["none"])
    return {p: {"bytes": held_bytes(s), "bytes_x": held_bytes(s) / base_bytes,
                "decode_ms": statistics.median(times[p]), "decode_x": statistics.median(times[p]) / base_ms,
                "decode_ms_per_block": statistics.median(times[p]) / spec.num_blocks}
            for p, s in stacks.items()}


def mid_model(folder: Path) -> str:
    from potluck.core.model.tiny import make_tiny_model

    return str(make_tiny_model("llama", folder / "mid", layers=16, hidden=1024, seed=1, shard_size="200MB"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from potluck.core.model.builtin import builtin_model_path

    repeats, rounds, tokens = (5, 2, 512) if args.quick else (20, 5, 4096)
    smol = str(builtin_model_path())
    report = {"smollm2": {"quality": quality(smol, tokens), "speed": speed_and_memory(smol, repeats, rounds)}}
    with tempfile.TemporaryDirectory() as tmp:
        report["mid"] = {"speed": speed_and_memory(mid_model(Path(tmp)), repeats, rounds)}
    print("| model | precision | blocks' memory (× float32) | decode step ms (× float32) | perplexity | "
          "next-token agreement | KL |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, label in (("smollm2", "SmolLM2-135M"), ("mid", "mid (1024 × 16)")):
        for p in PRECISIONS:
            s = report[name]["speed"][p]
            q = report[name].get("quality", {}).get(p, {})
            ppl = f"{q['perplexity']:.2f}" if q else ""
            agree = f"{q['agreement']:.3f}" if "agreement" in q else ""
            kl = f"{q['kl']:.4f}" if "kl" in q else ""
            print(f"| {label} | {p} | {s['bytes'] / 2**20:.1f} MiB ({s['bytes_x']:.3f}) | "
                  f"{s['decode_ms']:.2f} ({s['decode_x']:.2f}) | {ppl} | {agree} | {kl} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
