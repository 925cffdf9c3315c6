"""What the OpenAI-compatible API adds to a reply: first token through `potluck api` vs `generate` on the same swarm.

    python bench/bench_api.py                      # tiny Llama, 2 servers, 20 repeats (about two minutes)
    python bench/bench_api.py --model mid --repeats 10
    python bench/bench_api.py --quick              # smoke run

Two real `potluck serve` processes hold the blocks (bench/common.py's random-weight Llama, split in two). Against
them, in turns:

- generate: a DistributedModelForCausalLM in this process, as `potluck generate` runs it; first token = the time
  from the call to the first `on_token` with text (a token that ends in an incomplete character shows nothing yet);
- api: a real `potluck api --initial-peers …` process with its own client, asked by this process over HTTP with a
  kept-alive connection (as an app holds one), streamed; first token = the time from sending the request to the
  first server-sent event carrying text.

Both run the same greedy reply (token-id prompt, or chat messages through the chat template) with no early stop, and
their text is checked to be the same. Printed: medians of first-token time and of the whole reply, and the API's
overhead (api - generate) per reply and per token. Target: first token through the API at most 30 ms later.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench import common
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common

TARGET_MS = 30.0


def time_generate(model, kind: str, prompt, new_tokens: int) -> tuple[float, float, str]:
    """(first text s, whole reply s, text) of one greedy reply in this process."""
    began, first = time.perf_counter(), []

    def on_token(token_id: int, text: str) -> None:
        if text and not first:  # as on the API side: the first token that shows something
            first.append(time.perf_counter())

    args = dict(messages=prompt) if kind == "chat" else dict(input_ids=prompt)
    result = model.generate(**args, max_new_tokens=new_tokens, eos_token_id=None, on_token=on_token)
    return first[0] - began, time.perf_counter() - began, result.text


def time_api(http, model_id: str, kind: str, prompt, new_tokens: int) -> tuple[float, float, str]:
    """(first text s, whole reply s, text) of one greedy streamed reply through the API."""
    from potluck.core.api.responses import SseReader

    body = {"model": model_id, "max_tokens": new_tokens, "temperature": 0, "ignore_eos": True, "stream": True}
    body.update({"messages": prompt} if kind == "chat" else {"prompt": prompt})
    path = "/chat/completions" if kind == "chat" else "/completions"
    began, first, text, reader = time.perf_counter(), None, "", SseReader()
    with http.stream("POST", path, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            data = reader.feed(line)
            if data is None or data == "[DONE]":
                continue
            choice = json.loads(data)["choices"][0]
            piece = choice.get("text") if kind == "text" else choice["delta"].get("content")
            if piece and first is None:
                first = time.perf_counter()
            text += piece or ""
    return first - began, time.perf_counter() - began, text


def start_api_process(model_dir: str, peers: list[str]) -> tuple[subprocess.Popen, str]:
    from potluck.core.localswarm import child_environment
    from potluck.core.program import program_command

    process = subprocess.Popen([*program_command(), "api", "--model", model_dir, "--initial-peers", *peers, "--port",
                                "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=child_environment())
    url = ""
    for line in process.stdout:
        url = line.split()[1] if line.startswith("api ") else url
        if line.strip() == "ready":
            return process, url
    raise RuntimeError(f"`potluck api` did not start: exit {process.wait()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=tuple(common.MODELS), default="tiny")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    common.set_thread_environment()
    import httpx2

    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.localswarm import LocalSwarm, split_blocks

    print(common.machine_line(common.machine_info()))
    with tempfile.TemporaryDirectory(prefix="potluck-bench-api-") as root:
        model_dir = str(common.build_model(args.model, Path(root)))
        layers = common.MODELS[args.model][1]
        with LocalSwarm(model_dir, split_blocks(layers, 2)) as swarm:
            model = DistributedModelForCausalLM.from_pretrained(model_dir, initial_peers=swarm.initial_peers)
            api, url = start_api_process(model_dir, swarm.initial_peers)
            try:
                http = httpx2.Client(base_url=url, timeout=120)
                model_id = http.get("/models").json()["data"][0]["id"]
                prompts = {"text": common.prompt_ids(args.prompt_tokens, model.spec.config.vocab_size),
                           "chat": [{"role": "user", "content": "Tell me a story about the sea and the stars."}]}
                print(f"model {args.model} ({layers} blocks on 2 servers), {repeats} repeats, "
                      f"{args.new_tokens} new tokens, prompt {args.prompt_tokens} token ids or one chat message")
                for kind, prompt in prompts.items():
                    report(kind, measure(model, http, model_id, kind, prompt, args.new_tokens, repeats),
                           args.new_tokens)
            finally:
                api.terminate()
                api.wait(30)
                model.shutdown()
    return 0


def measure(model, http, model_id: str, kind: str, prompt, new_tokens: int, repeats: int) -> dict:
    for _ in range(2):  # warm up both paths (routes, latencies, tokenizer, connections)
        time_generate(model, kind, prompt, new_tokens)
        time_api(http, model_id, kind, prompt, new_tokens)
    runs = {"generate": [], "api": []}
    for i in range(repeats):  # alternate, starting with each in turn, so that drift hits both
        order = ("generate", "api") if i % 2 == 0 else ("api", "generate")
        for which in order:
            if which == "generate":
                runs[which].append(time_generate(model, kind, prompt, new_tokens))
            else:
                runs[which].append(time_api(http, model_id, kind, prompt, new_tokens))
    texts = {text for results in runs.values() for _, _, text in results}
    if len(texts) != 1:
        raise AssertionError(f"the API and generate disagree: {texts}")
    return runs


def report(kind: str, runs: dict, new_tokens: int) -> None:
    first = {k: statistics.median(r[0] for r in v) * 1000 for k, v in runs.items()}
    whole = {k: statistics.median(r[1] for r in v) * 1000 for k, v in runs.items()}
    overhead = first["api"] - first["generate"]
    print(f"\n{kind} prompt: median ms          generate      api   api - generate")
    print(f"  first token                {first['generate']:9.1f} {first['api']:8.1f}   {overhead:+8.1f}"
          f"   ({'within' if overhead <= TARGET_MS else 'OVER'} the +{TARGET_MS:.0f} ms target)")
    extra = whole["api"] - whole["generate"]
    print(f"  whole reply ({new_tokens} tokens)   {whole['generate']:9.1f} {whole['api']:8.1f}   {extra:+8.1f}"
          f"   ({extra / new_tokens:+.2f} ms per token)")


if __name__ == "__main__":
    sys.exit(main())
