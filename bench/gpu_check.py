"""The CUDA paths, checked on a machine with a GPU: sizing from real free VRAM, float16/bfloat16 blocks, a swarm.

    python bench/gpu_check.py            # prints what it found; exit 0 when every check passed

Prints, in order: the device and its free/total memory; what sizing decides from the real free VRAM for a
Llama-7B-shaped block (no weights loaded); a tiny model's blocks in float16 and bfloat16 on the GPU against the
float32 CPU model (max logit difference, same greedy tokens); and a 2-server local swarm with `--device cuda
--dtype float16` whose greedy tokens are compared with the local float16 GPU model. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check here")
        return 2
    from transformers import AutoModelForCausalLM, LlamaConfig

    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.localswarm import LocalSwarm
    from potluck.core.model.families import family_for
    from potluck.core.model.loading import load_blocks, load_client_parts, open_model
    from potluck.core.model.tiny import make_tiny_model
    from potluck.core.server.memory import probe_free_bytes
    from potluck.core.server.sizing import MemoryPlanInput, plan_num_blocks

    ok = True
    free, total = torch.cuda.mem_get_info()
    print(f"device: {torch.cuda.get_device_name()}  free {free / 2**30:.1f} GiB of {total / 2**30:.1f} GiB")
    assert probe_free_bytes("cuda") > 0

    llama7b = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
    per_block = family_for(llama7b).block_parameter_count(llama7b) * 2
    decision = plan_num_blocks(MemoryPlanInput(
        device="cuda", free_bytes=probe_free_bytes("cuda"), bytes_per_block=per_block,
        cache_bytes_per_token_per_block=2 * 32 * 128 * 2, cache_tokens=8192, workspace_bytes=256 * 2**20,
        reserve_bytes=2 * 2**30, max_blocks=80))
    print(f"sizing for 7B-shaped float16 blocks ({per_block / 2**20:.0f} MiB each): {decision.num_blocks} blocks")
    print(f"  {decision.explanation}")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_model("llama", Path(tmp) / "tiny", layers=8, hidden=256, seed=0)
        spec = open_model(str(model_dir))
        ids = torch.tensor([[5, 17, 33, 2, 40, 99, 120, 7]])
        cpu = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        with torch.inference_mode():
            want = cpu(ids).logits[0, -1]
            for dtype in (torch.float16, torch.bfloat16):
                stack = load_blocks(spec, 0, 8, dtype, "cuda")
                parts = load_client_parts(spec, torch.float32)
                hidden = stack(parts.embed_ids(ids).to("cuda", dtype)).float().cpu()
                got = parts.logits(hidden[:, -1:])[0, -1]
                diff = (got - want).abs().max().item()
                same = int(got.argmax()) == int(want.argmax())
                ok &= same
                print(f"blocks on cuda in {dtype}: max logit difference vs float32 CPU {diff:.4f}, same next token: {same}")
                del stack
                torch.cuda.empty_cache()

        gpu16 = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float16).cuda().eval()
        out = gpu16.generate(ids.cuda(), max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=None)
        reference = out[0, ids.shape[1]:].tolist()
        with LocalSwarm(str(model_dir), [(0, 4), (4, 8)], dtype="float16", extra_args=["--device", "cuda"]) as swarm:
            client = DistributedModelForCausalLM.from_pretrained(str(model_dir), initial_peers=swarm.initial_peers, dtype="float16")
            try:
                result = client.generate(ids[0].tolist(), max_new_tokens=16, eos_token_id=None)
            finally:
                client.shutdown()
        agree = sum(a == b for a, b in zip(result.token_ids, reference))
        print(f"2-server float16 swarm on cuda: {agree}/16 greedy tokens equal the local float16 model; "
              f"median step {sorted(result.step_seconds)[len(result.step_seconds) // 2] * 1000:.1f} ms")
        ok &= agree >= 12  # float16 on a GPU is not bit-exact between a fused model and split blocks
    print("gpu check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
