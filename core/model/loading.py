"""Open a model and build exactly the pieces one process needs: a block range, or the client-side parts."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from potluck.core.model.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from potluck.core.model.families import BlockStack, ClientParts, Family, family_for

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


class DtypeError(ValueError):
    """The requested dtype cannot be used on this device."""


def parse_dtype(name: str, device: str = "cpu") -> torch.dtype:
    key = DTYPE_ALIASES.get(name.lower(), name.lower())
    if key not in DTYPES:
        raise DtypeError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    if key == "float16" and not device.startswith("cuda"):
        raise DtypeError("float16 is only for GPUs: on a CPU it is slow and loses accuracy; use bfloat16 or float32")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


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

    def block_bytes(self, dtype: torch.dtype) -> int:
        """Bytes of one block's weights in `dtype`."""
        return self.family.block_parameter_count(self.config) * torch.empty((), dtype=dtype).element_size()

    def cache_bytes_per_token(self, dtype: torch.dtype) -> int:
        """KV-cache bytes one token costs in one block."""
        config = self.config
        heads = getattr(config, "num_attention_heads", None) or config.n_head
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or self.hidden_size // heads
        return 2 * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


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
    config._attn_implementation = family.attention_implementation
    return ModelSpec(checkpoint, config, family)


def load_blocks(spec: ModelSpec, start: int, end: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> BlockStack:
    """Build blocks [start, end), reading only their tensors (and only the files that hold them)."""
    if not 0 <= start < end <= spec.num_blocks:
        raise ValueError(f"block range {start}:{end} is outside the model's 0:{spec.num_blocks}")
    names = list(spec.checkpoint.weight_map)
    wanted = [n for i in range(start, end) for n in spec.family.block_tensor_names(names, i)]
    tensors = spec.checkpoint.load_tensors(wanted)
    stack = spec.family.build_stack(spec.config, start, end, tensors, names, dtype)
    return stack.to(device)


def load_client_parts(spec: ModelSpec, dtype: torch.dtype = torch.float32, device: str = "cpu") -> ClientParts:
    names = spec.family.client_tensor_names(list(spec.checkpoint.weight_map), spec.config)
    tensors = spec.checkpoint.load_tensors(names.embeddings + names.final_norm + names.lm_head)
    return spec.family.build_client_parts(spec.config, tensors, names, dtype).to(device)
