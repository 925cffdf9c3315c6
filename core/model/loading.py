"""Open a model and build exactly the pieces one process needs: a block range, or the client-side parts."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from potluck.core.errors import PotluckError
from potluck.core.model.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from potluck.core.model.families import BlockStack, ClientParts, Family, family_for, shapes
from potluck.core.model.families.cache import ROLLBACK_MARGIN_TOKENS
from potluck.core.model.families.shapes import WeightShape
from potluck.core.model.quant.format import Precision, parse_precision, quantized_bytes
from potluck.core.model.quant.modules import quantize_module

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TYPICAL_SESSION_TOKENS = 4096  # the session length cache_bytes_per_token averages over (the servers' default maximum)
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


class DtypeError(PotluckError, ValueError):
    """The requested dtype cannot be used on this device."""


AUTO = "auto"  # the checkpoint's own dtype (see resolve_dtype)


def parse_dtype(name: str, device: str = "cpu") -> torch.dtype:
    """A named dtype (not "auto": that needs the model, see resolve_dtype)."""
    key = DTYPE_ALIASES.get(name.lower(), name.lower())
    if key not in DTYPES:
        raise DtypeError(f"unknown dtype {name!r}; choose one of auto, {', '.join(DTYPES)}")
    if key == "float16" and not device.startswith("cuda"):
        raise DtypeError("float16 is only for GPUs: on a CPU it is slow and loses accuracy; use bfloat16 or float32")
    return DTYPES[key]


def check_dtype_name(name: str, device: str = "cpu") -> str:
    """Refuse a bad dtype name before anything is loaded ("auto" passes); returns it."""
    if name.lower() != AUTO:
        parse_dtype(name, device)
    return name


def resolve_dtype(spec: "ModelSpec", name: str, device: str = "cpu") -> torch.dtype:
    """"auto" is the checkpoint's own dtype: bfloat16 stays bfloat16 (half the memory of float32, nothing lost);
    float16 becomes float32 on a CPU (float16 is for GPUs); a GGUF file or a checkpoint that names no dtype
    gives float32 (its weights are dequantized to float32)."""
    if name.lower() != AUTO:
        return parse_dtype(name, device)
    native = spec.native_dtype
    if native is torch.float16 and not device.startswith("cuda"):
        return torch.float32
    return native


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def compute_name(dtype: torch.dtype, precision: Precision) -> str:
    """What a server computes in, as announced: "bfloat16", "float32", "float32+int8", "float32+int4". A client
    routes through servers of one compute name only, so a fail-over never changes the numbers."""
    return dtype_name(dtype) if precision is Precision.NONE else f"{dtype_name(dtype)}+{precision.value}"


@dataclass
class ModelSpec:
    """An opened model: checkpoint files, config and architecture family. Reads no weights."""

    checkpoint: Checkpoint
    config: object
    family: Family

    @property
    def num_blocks(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def uid(self) -> str:
        return self.checkpoint.uid

    @property
    def native_dtype(self) -> torch.dtype:
        """The dtype the checkpoint's weights are stored in (float32 for GGUF files and when none is named)."""
        if getattr(self.checkpoint, "gguf_path", None) is not None:
            return torch.float32
        named = self.checkpoint.config_dict.get("torch_dtype") or self.checkpoint.config_dict.get("dtype")
        return DTYPES.get(str(named).replace("torch.", ""), torch.float32)

    def block_weights(self, index: int) -> list[WeightShape]:
        """Every tensor of block `index` as a shape (experts stacked, with how many run per token)."""
        return self.family.block_weights(self.config, index)

    def block_matrices(self, index: int) -> list[tuple[int, int, int]]:
        """(out_features, in_features, count) of block `index`'s weight matrices, experts included, for applying a
        precision (e.g. `sum(quantized_bytes(o, i, p) * n for o, i, n in spec.block_matrices(0))`)."""
        return shapes.matrices(self.block_weights(index))

    def _largest(self, bytes_of_block) -> int:
        return max(bytes_of_block(i) for i in range(self.num_blocks))

    def block_bytes(self, dtype: torch.dtype, index: int | None = None,
                    precision: Precision | str = Precision.NONE) -> int:
        """Bytes of one block's weights in `dtype` (at `precision`: quantized linear layers, the rest in float32,
        as load_blocks keeps them), all experts included; without `index`, the largest block."""
        return self._bytes(dtype, index, precision, active_only=False)

    def active_block_bytes(self, dtype: torch.dtype, index: int | None = None,
                           precision: Precision | str = Precision.NONE) -> int:
        """Bytes of weights one token reads in a block: attention, norms, router, shared parts and the top-k experts
        (all of it for a dense model); without `index`, the largest block."""
        return self._bytes(dtype, index, precision, active_only=True)

    def _bytes(self, dtype: torch.dtype, index: int | None, precision: Precision | str, active_only: bool) -> int:
        precision = parse_precision(precision)
        size, matrix_bytes = _element_bytes(dtype), None
        if precision is not Precision.NONE:
            size = _element_bytes(torch.float32)
            matrix_bytes = lambda out, inp: quantized_bytes(out, inp, precision)  # noqa: E731
        if index is None:
            return self._largest(lambda i: self._bytes(dtype, i, precision, active_only))
        return shapes.weight_bytes(self.block_weights(index), size, active_only=active_only, matrix_bytes=matrix_bytes)

    def describe_block(self, dtype: torch.dtype, index: int = 0) -> str:
        """A sentence for the dashboard: "a block holds 128 experts of which 4 run per token: ..."."""
        return shapes.describe_block(self.block_weights(index), _element_bytes(dtype))

    def kv_bytes_per_token(self, dtype: torch.dtype) -> int:
        """Keys and values one token adds to one attention layer."""
        config = self.config
        heads = getattr(config, "num_attention_heads", None) or config.n_head
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or self.hidden_size // heads
        return 2 * kv_heads * head_dim * _element_bytes(dtype)

    def cache_tokens_kept(self, index: int, session_tokens: int) -> int:
        """Tokens block `index` keeps for a session of `session_tokens` tokens: all of them, or for a sliding-window
        layer at most window - 1 + the rollback margin (see families/cache.py)."""
        window = self.family.sliding_window(self.config)
        if window and self.family.layer_type(self.config, index) == "sliding_attention":
            return min(session_tokens, window - 1 + ROLLBACK_MARGIN_TOKENS)
        return session_tokens

    def session_cache_bytes(self, dtype: torch.dtype, session_tokens: int, start: int = 0, end: int | None = None) -> int:
        """KV-cache bytes blocks [start, end) hold for one session of `session_tokens` tokens (exact)."""
        end = self.num_blocks if end is None else end
        return self.kv_bytes_per_token(dtype) * sum(self.cache_tokens_kept(i, session_tokens) for i in range(start, end))

    def cache_bytes_per_token(self, dtype: torch.dtype, session_tokens: int = TYPICAL_SESSION_TOKENS) -> int:
        """KV-cache bytes one token costs in one block, averaged over the model's blocks for sessions of
        `session_tokens` tokens: full-attention layers pay for every token, sliding-window layers only for their
        window (+ rollback margin). Shorter sessions cost sliding layers more per token (at most the full cost)."""
        total = self.session_cache_bytes(dtype, session_tokens)
        return -(-total // (session_tokens * self.num_blocks))  # rounded up


def _element_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def open_model(model: str, revision: str | None = None) -> ModelSpec:
    from transformers import AutoConfig

    checkpoint = open_checkpoint(model, revision)
    config_dict = dict(checkpoint.config_dict)
    model_type = config_dict.pop("model_type", None)
    if not model_type:
        raise CheckpointError(f"{model}: config.json has no model_type")
    try:
        config = AutoConfig.for_model(model_type, **config_dict)
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{model}: cannot read its config: {e}") from e
    family = family_for(config)  # raises UnsupportedModelError for other architectures
    config = family.decoder_config(config)  # a multimodal checkpoint's text part
    config._attn_implementation = family.attention_implementation  # what transformers itself picks (eager for gpt-oss)
    if family.experts_implementation is not None:
        config._experts_implementation = family.experts_implementation  # the same expert kernels as transformers
    return ModelSpec(checkpoint, config, family)


def load_blocks(spec: ModelSpec, start: int, end: int, dtype: torch.dtype = torch.float32, device: str = "cpu", *,
                quant: Precision | str = Precision.NONE, on_block=None) -> BlockStack:
    """Build blocks [start, end), reading only their tensors (and only the files that hold them), one block at a
    time: each block is read, built at `dtype` and, with `quant` int8 or int4, quantized before the next is read,
    so memory never holds more than one block at full precision. `on_block(index)` reports progress.

    Quantized blocks keep their norms and other small parameters in float32; their linear layers and MoE experts
    use the CPU kernels of core/model/quant (no GPU kernels yet: on CUDA only "none" is accepted). A bfloat16
    checkpoint's block is built at bfloat16 before it is quantized (the same values, half the memory at the peak).
    """
    if not 0 <= start < end <= spec.num_blocks:
        raise ValueError(f"block range {start}:{end} is outside the model's 0:{spec.num_blocks}")
    precision = parse_precision(quant)
    if precision is not Precision.NONE:
        if device.startswith("cuda"):
            raise DtypeError(f"--quant {precision.value} has CPU kernels only; on a GPU use --quant none")
        dtype = torch.float32
    names = list(spec.checkpoint.weight_map)
    build_dtype = dtype
    if precision is not Precision.NONE and spec.native_dtype in (torch.bfloat16, torch.float16):
        build_dtype = spec.native_dtype  # lossless: the checkpoint's own values
    stack = None
    for index in range(start, end):
        tensors = spec.checkpoint.load_tensors(spec.family.block_tensor_names(names, index))
        block = spec.family.build_stack(spec.config, index, index + 1, tensors, names, build_dtype)
        del tensors
        if precision is not Precision.NONE:
            for layer in block.layers:
                quantize_module(layer, precision)
                spec.family.quantize_experts(layer, precision)  # stacked MoE experts (not nn.Linear): the family's layout
            for parameter in block.parameters():  # what was not quantized computes in float32
                if parameter.is_floating_point() and parameter.dtype != torch.float32:
                    parameter.data = parameter.data.float()
        block = block.to(device)
        stack = block if stack is None else stack.extended(block)
        if on_block is not None:
            on_block(index)
    stack.compute = compute_name(dtype, precision)
    return stack


def load_client_parts(spec: ModelSpec, dtype: torch.dtype = torch.float32, device: str = "cpu") -> ClientParts:
    names = spec.family.client_tensor_names(list(spec.checkpoint.weight_map), spec.config)
    tensors = spec.checkpoint.load_tensors(names.embeddings + names.final_norm + names.lm_head)
    return spec.family.build_client_parts(spec.config, tensors, names, dtype).to(device)
