"""Precisions: "auto" is the checkpoint's own dtype; the whole model in one process (`--local`) is transformers'
model; swarms of int8 and of int4 servers give exactly the tokens of the same quantized model run locally; a
client keeps to one precision; quantized blocks take the memory their bit width implies."""

import json
import subprocess
import sys
import types

import pytest
import torch

from potluck.core.client.local import LocalModelForCausalLM
from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.client.swarm_view import SwarmError
from potluck.core.localswarm import split_blocks
from potluck.core.model.loading import DtypeError, load_blocks, open_model, resolve_dtype

from .conftest import LAYERS
from .swarm_helpers import InProcessSwarm
from .test_exactness import PROMPT, reference

NEW_TOKENS = 10


@pytest.mark.parametrize("native, device, expected", [
    (torch.bfloat16, "cpu", torch.bfloat16),  # bfloat16 stays: half the memory of float32, nothing lost
    (torch.float32, "cpu", torch.float32),
    (torch.float16, "cpu", torch.float32),  # float16 is for GPUs
    (torch.float16, "cuda", torch.float16),
])
def test_auto_is_the_checkpoints_own_dtype(native, device, expected):
    assert resolve_dtype(types.SimpleNamespace(native_dtype=native), "auto", device) is expected


@pytest.mark.parametrize("name, device, expected", [("float32", "cpu", torch.float32), ("bf16", "cpu", torch.bfloat16)])
def test_a_named_dtype_wins(name, device, expected):
    assert resolve_dtype(types.SimpleNamespace(native_dtype=torch.float16), name, device) is expected


def test_float16_on_a_cpu_is_refused():
    with pytest.raises(DtypeError, match="only for GPUs"):
        resolve_dtype(types.SimpleNamespace(native_dtype=torch.float32), "float16", "cpu")


@pytest.mark.parametrize("config_dtype, expected", [("bfloat16", torch.bfloat16), ("float32", torch.float32),
                                                    (None, torch.float32)])
def test_native_dtype_comes_from_the_config(tiny_models, tmp_path, config_dtype, expected):
    spec = open_model(str(tiny_models["llama"]))
    spec.checkpoint.config_dict = {**spec.checkpoint.config_dict, "dtype": config_dtype, "torch_dtype": None}
    assert spec.native_dtype is expected


@pytest.mark.parametrize("quant, limit", [("int8", 0.30), ("int4", 0.17)])
def test_quantized_blocks_take_what_their_bit_width_implies(tmp_path, quant, limit):
    from potluck.core.model.tiny import make_tiny_model

    spec = open_model(str(make_tiny_model("llama", tmp_path / "m", layers=2, hidden=512, shard_size="2MB")))
    held = lambda stack: sum(t.numel() * t.element_size() for t in [*stack.parameters(), *stack.buffers()])  # noqa: E731
    full, small = held(load_blocks(spec, 0, 2)), held(load_blocks(spec, 0, 2, quant=quant))
    assert small <= limit * full
    assert abs(small - 2 * spec.block_bytes(torch.float32, precision=quant)) <= 1024  # sizing counts what loading holds


def test_local_model_is_transformers_model(tiny_models):
    for arch in ("llama", "qwen2", "bloom"):
        expected, _ = reference(tiny_models[arch], PROMPT, NEW_TOKENS)
        local = LocalModelForCausalLM.from_pretrained(str(tiny_models[arch]), dtype="float32")
        assert local.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None).token_ids == expected, arch
        assert local.compute == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["int8", "int4"])
@pytest.mark.parametrize("num_servers", [1, 2, 3])
def test_quantized_swarm_equals_the_local_quantized_model(tiny_models, quant, num_servers):
    model_dir = str(tiny_models["llama"])
    local = LocalModelForCausalLM.from_pretrained(model_dir, quant=quant)
    expected = local.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None).token_ids
    assert local.compute == f"float32+{quant}"
    with InProcessSwarm(model_dir, split_blocks(LAYERS, num_servers), quant=quant) as swarm:
        for push in (True, False):
            client = DistributedModelForCausalLM.from_pretrained(model_dir, initial_peers=swarm.initial_peers, push=push,
                                                                 timeout=10)
            try:
                result = client.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None)
                assert result.token_ids == expected, f"push={push}"
                assert client.compute == f"float32+{quant}"  # what the servers announced
            finally:
                client.shutdown()


@pytest.mark.slow
def test_a_client_routes_through_one_precision_only(tiny_models):
    model_dir = str(tiny_models["llama"])
    with InProcessSwarm(model_dir, [(0, LAYERS)], quant="int8") as swarm:
        swarm.quant = "none"
        swarm.add(0, LAYERS // 2)  # a full-precision server of half the blocks: never mixed into an int8 route
        client = DistributedModelForCausalLM.from_pretrained(model_dir, initial_peers=swarm.initial_peers, timeout=10)
        try:
            result = client.generate(PROMPT, max_new_tokens=4, eos_token_id=None)
            assert [h.peer_id for h in result.route] == [swarm.servers[0].peer_id]
        finally:
            client.shutdown()
        client = DistributedModelForCausalLM.from_pretrained(model_dir, initial_peers=swarm.initial_peers, timeout=10,
                                                             quant="int4")
        try:
            with pytest.raises(SwarmError, match="at precision int4"):
                client.generate(PROMPT, max_new_tokens=4)
        finally:
            client.shutdown()


def test_generate_local_chat_from_the_command_line(tiny_models):
    model_dir = str(tiny_models["llama"])
    out = subprocess.run([sys.executable, "-m", "potluck.core", "generate", "--model", model_dir, "--local", "--chat",
                          "--prompt", "Hello!", "--max-new-tokens", "5", "--no-eos", "--json", "--quant", "int8"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    local = LocalModelForCausalLM.from_pretrained(model_dir, quant="int8")
    expected = local.generate(messages=[{"role": "user", "content": "Hello!"}], max_new_tokens=5, eos_token_id=None)
    assert got["token_ids"] == expected.token_ids and got["compute"] == "float32+int8"
    assert got["route"] == [{"peer_id": "local", "name": "this PC", "start_block": 0, "end_block": LAYERS}]


@pytest.mark.parametrize("args, message", [
    (["--local", "--prompt", "x", "--quant", "int3"], "invalid choice"),
    (["--local", "--chat", "--prompt-ids", "1,2"], "--chat sends --prompt"),
    (["--prompt", "x"], "--initial-peers"),
])
def test_generate_refuses_bad_combinations(tiny_models, args, message):
    out = subprocess.run([sys.executable, "-m", "potluck.core", "generate", "--model", str(tiny_models["llama"]), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_a_bfloat16_checkpoint_is_quantized_from_its_own_values(tiny_models, tmp_path):
    """Built at bfloat16 (half the memory at the peak) or at float32, a bfloat16 checkpoint quantizes to the same bits."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_models["llama"]), dtype=torch.bfloat16)
    model.save_pretrained(tmp_path / "bf16", max_shard_size="40KB")
    spec = open_model(str(tmp_path / "bf16"))
    assert spec.native_dtype is torch.bfloat16
    built_small = load_blocks(spec, 0, 2, quant="int8")
    spec.checkpoint.config_dict = {**spec.checkpoint.config_dict, "dtype": "float32", "torch_dtype": "float32"}
    built_wide = load_blocks(spec, 0, 2, quant="int8")
    small, wide = built_small.state_dict(), built_wide.state_dict()
    assert small.keys() == wide.keys()
    for name in small:
        assert small[name].dtype == wide[name].dtype and torch.equal(small[name], wide[name]), name
    assert all(p.dtype is torch.float32 for p in built_small.parameters() if p.is_floating_point())
