"""int8 / int4 for mixture-of-experts weights: `QuantizedExperts` computes what the transformers expert module
computes (Qwen3-MoE and Mixtral SiLU-gated, gpt-oss's biased, clamped SwiGLU in its interleaved, transposed layout),
a token's output never depends on the other tokens of the call, quantized MoE blocks take the memory their bit width
implies and exactly what sizing says, and a swarm of quantized MoE servers gives the local quantized model's tokens."""

import copy
import gc
import weakref

import pytest
import torch

from potluck.core.client.local import LocalModelForCausalLM
from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.localswarm import split_blocks
from potluck.core.model.families.experts import (
    CONCATENATED_GATED,
    ExpertRoutingError,
    GatedActivation,
    QuantizedExperts,
    StackedWeights,
    quantize_expert_module,
    quantize_layer_experts,
)
from potluck.core.model.families.shapes import EXPERTS, MLP, NORM, WeightShape, stacked_experts, weight_bytes
from potluck.core.model.loading import load_blocks, open_model
from potluck.core.model.quant.format import quantized_bytes
from potluck.core.model.quant.weight import QuantizedWeight
from potluck.core.model.tiny import make_tiny_model

from .conftest import LAYERS
from .swarm_helpers import InProcessSwarm
from .test_exactness import PROMPT

MOE_ARCHS = ("qwen3_moe", "mixtral", "gpt_oss")
SPARSE_BLOCK = 1  # sparse in every tiny MoE model (Qwen3-MoE's block 0 is dense: mlp_only_layers)
NEW_TOKENS = 10


def float_layer(model_dir, index=SPARSE_BLOCK):
    spec = open_model(str(model_dir))
    return spec, load_blocks(spec, index, index + 1).layers[0]


def quantized_experts(spec, layer, precision) -> QuantizedExperts:
    """The family's own hook applied to a copy of the layer (so the layout each family declares is what is tested)."""
    copied = copy.deepcopy(layer)
    assert spec.family.quantize_experts(copied, precision) == 1
    return copied.mlp.experts


def routing(tokens: int, experts: int, top_k: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    index = torch.rand(tokens, experts, generator=generator).topk(top_k, dim=-1).indices
    weights = torch.softmax(torch.randn(tokens, top_k, generator=generator), dim=-1)
    return index, weights


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


def dequantized_reference(arch: str, float_experts, quantized: QuantizedExperts):
    """The transformers expert module holding the float32 weights the quantized bytes stand for, laid out as the
    family stores them (gpt-oss: gate and up interleaved, [experts, in, out]): it differs from the quantized module
    only by the rounding of the activations inside qmatmul."""
    reference = copy.deepcopy(float_experts)
    inter = quantized.intermediate_dim
    with torch.no_grad():
        for e in range(quantized.num_experts):
            gate_up, down = (w.dequantize() for w in quantized.expert_weights(e))
            if arch == "gpt_oss":
                interleaved = torch.empty_like(gate_up)
                interleaved[0::2], interleaved[1::2] = gate_up[:inter], gate_up[inter:]
                gate_up, down = interleaved.t(), down.t()
            reference.gate_up_proj[e] = gate_up
            reference.down_proj[e] = down
    return reference


# ---- the quantized module computes the transformers module's function ----------------------------------------
@pytest.mark.parametrize("arch", MOE_ARCHS)
@pytest.mark.parametrize("precision, weights_bound, activations_bound", [("int8", 0.02, 5e-4), ("int4", 0.2, 0.03)])
@pytest.mark.parametrize("scale", [1.0, 20.0])  # x20 drives gpt-oss's gate and up past its clamp limit (7)
def test_quantized_experts_compute_what_transformers_computes(tiny_models, arch, precision, weights_bound,
                                                              activations_bound, scale):
    spec, layer = float_layer(tiny_models[arch])
    experts = layer.mlp.experts
    quantized = quantized_experts(spec, layer, precision)
    x = torch.randn(23, spec.hidden_size, generator=torch.Generator().manual_seed(1)) * scale
    index, weights = routing(23, quantized.num_experts, spec.config.num_experts_per_tok, seed=2)
    with torch.inference_mode():
        expected = experts(x, index, weights)  # transformers' own module (its default grouped_mm kernel)
        got = quantized(x, index, weights)
        as_stored = dequantized_reference(arch, experts, quantized)(x, index, weights)
    # against the float weights: the error the bit width implies (Gaussian weights: ~0.5 % a matrix at int8, ~8 % at int4)
    assert relative_error(got, expected) < weights_bound
    # against the float module holding the stored weights: only the activations' rounding (16-bit for int8 weights,
    # 8-bit for int4) is left, so a wrong layout, activation, bias or routing weight would show far above this
    assert relative_error(got, as_stored) < activations_bound
    if arch == "gpt_oss" and scale > 1:
        gate_up = x @ experts.gate_up_proj[0] + experts.gate_up_proj_bias[0]
        assert (gate_up.abs() > experts.limit).any()  # the clamp really was exercised


@pytest.mark.parametrize("arch", MOE_ARCHS)
@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_a_tokens_output_does_not_depend_on_the_other_tokens(tiny_models, arch, precision):
    spec, layer = float_layer(tiny_models[arch])
    quantized = quantized_experts(spec, layer, precision)
    tokens, top_k = 17, spec.config.num_experts_per_tok
    x = torch.randn(tokens, spec.hidden_size, generator=torch.Generator().manual_seed(5))
    index, weights = routing(tokens, quantized.num_experts, top_k, seed=6)
    with torch.inference_mode():
        chunk = quantized(x, index, weights)  # a prefill chunk: every expert gets several tokens
        for row in range(tokens):
            alone = quantized(x[row : row + 1], index[row : row + 1], weights[row : row + 1])
            assert torch.equal(alone[0], chunk[row]), f"token {row} alone differs from its bits in the chunk"
        # the same token among other tokens, at another position: the same bits
        others, other_index, other_weights = torch.randn(5, spec.hidden_size), *routing(5, quantized.num_experts, top_k, 7)
        mixed = quantized(torch.cat([others, x[3:4]]), torch.cat([other_index, index[3:4]]),
                          torch.cat([other_weights, weights[3:4]]))
        assert torch.equal(mixed[-1], chunk[3])
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            assert torch.equal(quantized(x, index, weights), chunk)  # and on one thread
        finally:
            torch.set_num_threads(threads)


def test_no_token_routed_gives_zeros_and_an_empty_call_works(tiny_models):
    spec, layer = float_layer(tiny_models["mixtral"])
    quantized = quantized_experts(spec, layer, "int8")
    with torch.inference_mode():
        empty = quantized(torch.empty(0, spec.hidden_size), torch.empty(0, 2, dtype=torch.long), torch.empty(0, 2))
        zero_weights = quantized(torch.randn(3, spec.hidden_size), torch.tensor([[0, 1]] * 3), torch.zeros(3, 2))
    assert empty.shape == (0, spec.hidden_size)
    assert torch.equal(zero_weights, torch.zeros(3, spec.hidden_size))


@pytest.mark.parametrize("call, message", [
    (lambda q, h: q(torch.randn(2, h), torch.tensor([[0, 99], [1, 2]]), torch.ones(2, 2)), "out of range"),
    (lambda q, h: q(torch.randn(2, h), torch.tensor([[0, -1], [1, 2]]), torch.ones(2, 2)), "out of range"),
    (lambda q, h: q(torch.randn(2, h + 1), torch.tensor([[0, 1], [1, 2]]), torch.ones(2, 2)), "hidden"),
    (lambda q, h: q(torch.randn(2, h), torch.tensor([[0, 1], [1, 2]]), torch.ones(2, 3)), "top_k_weights"),
    (lambda q, h: q(torch.randn(1, 2, h), torch.tensor([[0, 1]]), torch.ones(1, 2)), "hidden"),
])
def test_routing_that_does_not_fit_is_refused(tiny_models, call, message):
    spec, layer = float_layer(tiny_models["mixtral"])
    quantized = quantized_experts(spec, layer, "int8")
    with pytest.raises(ExpertRoutingError, match=message):
        call(quantized, spec.hidden_size)


def stack(*shapes, precision="int8", count=None):
    stacked = StackedWeights(count or len(shapes))
    for out, inp in shapes:
        stacked.add(QuantizedWeight.from_float(torch.randn(out, inp), precision))
    return stacked


@pytest.mark.parametrize("build, message", [
    (lambda: stack((64, 32), (32, 32)), "does not continue"),  # experts of different shapes
    (lambda: stack((64, 32), (64, 32), precision="int8").add(QuantizedWeight.from_float(torch.randn(64, 32), "int4")),
     "does not continue"),  # a third expert of another precision
    (lambda: QuantizedExperts(stack((64, 32), count=2), stack((32, 32), count=2), GatedActivation(torch.nn.SiLU())),
     "need one gate_up and one down weight"),  # stacks not filled
    (lambda: QuantizedExperts(stack((64, 32)), stack((32, 64)), GatedActivation(torch.nn.SiLU())),
     "not a gated expert's"),  # down is [inter, hidden] instead of [hidden, inter]
    (lambda: QuantizedExperts(stack((64, 32)), stack((32, 32)), GatedActivation(torch.nn.SiLU()), torch.zeros(1, 32)),
     "gate_up_bias of shape"),
])
def test_expert_weights_that_do_not_fit_together_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_the_hook_replaces_only_stacked_experts(tiny_models):
    spec, dense = float_layer(tiny_models["qwen3_moe"], index=0)  # Qwen3-MoE's dense block: nn.Linear MLP
    assert spec.family.quantize_experts(dense, "int4") == 0
    llama, layer = float_layer(tiny_models["llama"], index=0)
    assert llama.family.quantize_experts(layer, "int8") == 0  # dense families have nothing to replace
    spec, sparse = float_layer(tiny_models["qwen3_moe"])
    assert spec.family.quantize_experts(sparse, "none") == 0 and not isinstance(sparse.mlp.experts, QuantizedExperts)
    with pytest.raises(ValueError, match="not a stacked expert module"):
        quantize_layer_experts(sparse, "int8", CONCATENATED_GATED, path="mlp.gate")
    with pytest.raises(ValueError, match="nothing to quantize"):
        quantize_expert_module(sparse.mlp.experts, "none", CONCATENATED_GATED)


def test_the_float_experts_are_freed(tiny_models):
    spec, layer = float_layer(tiny_models["gpt_oss"])
    stacked = weakref.ref(layer.mlp.experts.gate_up_proj)
    assert spec.family.quantize_experts(layer, "int4") == 1
    gc.collect()
    assert stacked() is None


# ---- memory: what the bit width implies, and what sizing says --------------------------------------------------
@pytest.mark.parametrize("kind, matrix, quantized", [
    (EXPERTS, True, True), (MLP, True, True), (EXPERTS, False, False), (NORM, False, False),
])
def test_weight_bytes_quantize_expert_matrices_but_not_vectors(kind, matrix, quantized):
    shape = WeightShape("w", 64, 96 if matrix else 1, kind, count=8, active=2)
    at_int4 = lambda out, inp: quantized_bytes(out, inp, "int4")
    expected = quantized_bytes(64, 96, "int4") if quantized else 64 * (96 if matrix else 1) * 4
    assert weight_bytes([shape], 4, matrix_bytes=at_int4) == 8 * expected
    assert weight_bytes([shape], 4, matrix_bytes=at_int4, active_only=True) == 2 * expected


def test_stacked_experts_with_biases_count_matrices_quantized_and_biases_float32():
    weights = stacked_experts(hidden=96, intermediate=160, experts=4, top_k=2, bias=True)
    matrices = 4 * (quantized_bytes(320, 96, "int8") + quantized_bytes(96, 160, "int8"))
    biases = 4 * (320 + 96) * 4
    assert weight_bytes(weights, 4, matrix_bytes=lambda o, i: quantized_bytes(o, i, "int8")) == matrices + biases


@pytest.fixture(scope="module")
def wide_models(tmp_path_factory):
    """MoE models wide enough (hidden 256) for the weights to dominate, 2 blocks each."""
    root = tmp_path_factory.mktemp("wide_moe")
    return {arch: make_tiny_model(arch, root / arch, layers=2, hidden=256, seed=4, shard_size="2MB") for arch in MOE_ARCHS}


@pytest.mark.parametrize("arch", MOE_ARCHS)
@pytest.mark.parametrize("quant, limit", [("int8", 0.30), ("int4", 0.17)])
def test_quantized_moe_blocks_take_what_their_bit_width_implies(wide_models, arch, quant, limit):
    spec = open_model(str(wide_models[arch]))
    held = lambda stack: sum(t.numel() * t.element_size() for t in [*stack.parameters(), *stack.buffers()])
    full = load_blocks(spec, 0, 2)
    float_bytes = held(full)
    del full
    small = load_blocks(spec, 0, 2, quant=quant)
    sparse = sum(any(w.kind == EXPERTS for w in spec.block_weights(i)) for i in range(2))
    assert sum(isinstance(m, QuantizedExperts) for m in small.modules()) == sparse > 0
    assert held(small) <= limit * float_bytes
    sized = sum(spec.block_bytes(torch.float32, i, precision=quant) for i in range(2))
    assert abs(held(small) - sized) <= 1024  # sizing counts what loading holds (the stack's rotary buffer aside)


# ---- through the swarm: the local quantized model's tokens -------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("arch", MOE_ARCHS)
@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_quantized_moe_swarm_equals_the_local_quantized_model(tiny_models, arch, quant):
    model_dir = str(tiny_models[arch])
    local = LocalModelForCausalLM.from_pretrained(model_dir, quant=quant)
    assert sum(isinstance(m, QuantizedExperts) for m in local.stack.modules()) > 0
    expected = local.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None).token_ids
    with InProcessSwarm(model_dir, split_blocks(LAYERS, 2), quant=quant) as swarm:
        client = DistributedModelForCausalLM.from_pretrained(model_dir, initial_peers=swarm.initial_peers, timeout=10)
        try:
            result = client.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None)
            assert result.token_ids == expected
            assert client.compute == f"float32+{quant}" and len(result.route) == 2
        finally:
            client.shutdown()
