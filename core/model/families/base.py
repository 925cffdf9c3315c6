"""What every family shares: a stack of blocks with its cache API, the client-side parts, and the `Family` contract."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

import torch
from torch import nn

from potluck.core.errors import PotluckError
from potluck.core.model.families.cache import (
    ROLLBACK_MARGIN_TOKENS,
    CacheRollbackError,  # noqa: F401  (re-exported: families/__init__.py)
    kept_tokens,
    rollback,
    session_cache,
)
from potluck.core.model.families.shapes import WeightShape


class UnsupportedModelError(PotluckError, ValueError):
    """The model's architecture is not one Potluck can split."""


def modeling_module(model_type: str):
    return importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}


def load_state(module: nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype, keep_float32: tuple[str, ...] = (),
               where: str = "") -> nn.Module:
    """Load `state` into a module built on the meta device; every parameter must be present and nothing else.

    Parameters whose name contains one of `keep_float32` stay float32 when `dtype` is float16 (what transformers'
    `_keep_in_fp32_modules` does)."""
    def cast(name: str, t: torch.Tensor) -> torch.Tensor:
        keep = dtype == torch.float16 and any(part in f"{where}{name}" for part in keep_float32)
        return t.to(torch.float32 if keep else dtype)

    expected = set(module.state_dict().keys())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        detail = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise UnsupportedModelError(f"checkpoint tensors under {where!r} do not match the architecture: {detail}")
    module.load_state_dict({name: cast(name, t) for name, t in state.items()}, assign=True, strict=True)
    return module.eval().requires_grad_(False)


def materialize(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype,
                keep_float32: tuple[str, ...] = ()) -> nn.Module:
    """Load the `prefix`-named tensors into a module built on the meta device (see `load_state`)."""
    return load_state(module, strip_prefix(tensors, prefix), dtype, keep_float32, prefix)


def merge_experts(state: dict[str, torch.Tensor], *, source: str, gate: str, up: str, down: str) -> dict[str, torch.Tensor]:
    """Per-expert checkpoint tensors `{source}{e}.{gate,up,down}.weight` (how Qwen3-MoE and Mixtral are published)
    as the stacked `mlp.experts.gate_up_proj` [experts, 2 * intermediate, hidden] and `mlp.experts.down_proj`
    [experts, hidden, intermediate] that transformers 5's expert modules hold. Other tensors pass unchanged."""
    pattern = re.compile(rf"^{re.escape(source)}(\d+)\.(\w+)\.weight$")
    per_expert: dict[str, dict[int, torch.Tensor]] = {gate: {}, up: {}, down: {}}
    rest = {}
    for name, tensor in state.items():
        match = pattern.match(name)
        if match and match.group(2) in per_expert:
            per_expert[match.group(2)][int(match.group(1))] = tensor
        else:
            rest[name] = tensor
    count = len(per_expert[gate])
    if count == 0:
        return state
    if any(sorted(found) != list(range(count)) for found in per_expert.values()):
        raise UnsupportedModelError(f"the checkpoint's experts under {source!r} are incomplete: "
                                    f"{ {k: len(v) for k, v in per_expert.items()} }")
    rest["mlp.experts.gate_up_proj"] = torch.stack([torch.cat([per_expert[gate][e], per_expert[up][e]]) for e in range(count)])
    rest["mlp.experts.down_proj"] = torch.stack([per_expert[down][e] for e in range(count)])
    return rest


class BlockStack(nn.Module):
    """Blocks [start, end) of one model; `forward(hidden, cache)` continues the cache's sequence.

    A session holds `new_cache()`; `rollback(cache, position)` cuts it back to an absolute position (exact, or a
    `CacheRollbackError` when a sliding-window layer no longer keeps those tokens)."""

    def __init__(self, family: "Family", config, start: int, end: int, layers: nn.ModuleList):
        super().__init__()
        self.family, self.config, self.start, self.end = family, config, start, end
        self.layers = layers
        self.extras = family.stack_extras(config)
        self.compute = ""  # what the blocks compute in ("bfloat16", "float32+int4"), set by the loader

    def forward(self, hidden: torch.Tensor, cache=None) -> torch.Tensor:
        return self.family.run_stack(self, hidden, cache)

    def new_cache(self, margin_tokens: int | None = None):
        """An empty cache for one session: sliding-window layers keep their window plus a rollback margin."""
        return session_cache(self.config, ROLLBACK_MARGIN_TOKENS if margin_tokens is None else margin_tokens)

    def rollback(self, cache, position: int) -> None:
        """Cut this stack's layers of `cache` back to `position` tokens (all layers or none)."""
        rollback(cache, self.start, self.end, position)

    def kept_tokens(self, cache) -> dict[int, int]:
        """Tokens each of this stack's layers holds in `cache`, by absolute block index."""
        return kept_tokens(cache, self.start, self.end)

    def cached_length(self, cache) -> int:
        return 0 if cache is None else cache.get_seq_length(self.start)

    def extended(self, after: "BlockStack") -> "BlockStack":
        """This stack followed by `after` (which must start where this one ends), sharing both's weights."""
        if after.start != self.end:
            raise ValueError(f"blocks {after.start}:{after.end} do not continue {self.start}:{self.end}")
        return self._view(self.start, after.end, nn.ModuleList([*self.layers, *after.layers]))

    def _view(self, start: int, end: int, layers: nn.ModuleList) -> "BlockStack":
        view = BlockStack.__new__(BlockStack)
        nn.Module.__init__(view)
        view.family, view.config, view.start, view.end = self.family, self.config, start, end
        view.layers, view.extras, view.compute = layers, self.extras, self.compute
        return view

    def subrange(self, start: int, end: int) -> "BlockStack":
        """Blocks [start, end) of this stack, sharing its weights (a session may use part of a server's range)."""
        if not self.start <= start < end <= self.end:
            raise ValueError(f"blocks {start}:{end} are not within {self.start}:{self.end}")
        if (start, end) == (self.start, self.end):
            return self
        return self._view(start, end, nn.ModuleList(self.layers[start - self.start : end - self.start]))


@dataclass(frozen=True)
class ClientTensorNames:
    embeddings: tuple[str, ...]
    final_norm: tuple[str, ...]
    lm_head: tuple[str, ...]


class ClientParts(nn.Module):
    """What the client runs itself: embeddings before the first block, final norm and LM head after the last."""

    def __init__(self, embed: nn.Module, final_norm: nn.Module, lm_head: nn.Module):
        super().__init__()
        self.embed, self.final_norm, self.lm_head = embed, final_norm, lm_head

    @torch.inference_mode()
    def embed_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids)

    @torch.inference_mode()
    def normed(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.final_norm(hidden)

    @torch.inference_mode()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.final_norm(hidden))


class SoftcappedHead(nn.Linear):
    """An LM head whose logits are squashed into (-cap, cap): cap * tanh(logits / cap) (Gemma 2/3)."""

    def __init__(self, in_features: int, out_features: int, cap: float, device=None):
        super().__init__(in_features, out_features, bias=False, device=device)
        self.cap = float(cap)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(super().forward(hidden) / self.cap) * self.cap


def linear_head(config, tensors, head_names, embed_name, dtype, softcap: float | None = None) -> nn.Linear:
    weight = tensors[head_names[0]] if head_names else tensors[embed_name]  # tied: the head is the embedding
    if softcap:
        head = SoftcappedHead(weight.shape[1], weight.shape[0], softcap, device="meta")
    else:
        head = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    head.load_state_dict({"weight": weight.to(dtype)}, assign=True)
    return head.eval().requires_grad_(False)


class Family:
    """How to split one kind of architecture. Subclasses fill in the per-architecture parts."""

    name = "base"
    model_types: tuple[str, ...] = ()
    attention_implementation = "sdpa"  # what transformers itself picks for the family; exactness is tested against it
    experts_implementation: str | None = None  # for mixtures of experts: what transformers picks ("grouped_mm")
    keep_float32: tuple[str, ...] = ()  # parameter names kept float32 when loading float16 (transformers does)

    def decoder_config(self, config):
        """The config that describes the decoder blocks (a multimodal config's text part)."""
        return config

    def layer_prefix(self, names: list[str], index: int) -> str: ...
    def build_layer(self, config, index: int) -> nn.Module: ...
    def stack_extras(self, config) -> nn.ModuleDict: ...
    def run_stack(self, stack: BlockStack, hidden: torch.Tensor, cache) -> torch.Tensor: ...
    def client_tensor_names(self, names: list[str], config) -> ClientTensorNames: ...
    def build_client_parts(self, config, tensors, names: ClientTensorNames, dtype) -> "ClientParts": ...
    def block_weights(self, config, index: int) -> list[WeightShape]:
        """Every tensor of block `index`, with its parameter name and shape (see shapes.py)."""
        ...

    def layer_type(self, config, index: int) -> str:
        """"full_attention" or "sliding_attention" for block `index`."""
        return "full_attention"

    def sliding_window(self, config) -> int | None:
        return getattr(config, "sliding_window", None)

    def block_state(self, tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        """Block tensors as the transformers layer names them, from the checkpoint's tensors under `prefix`
        (a family whose published checkpoints lay weights out differently converts them here)."""
        return strip_prefix(tensors, prefix)

    def build_stack(self, config, start: int, end: int, tensors, weight_names: list[str], dtype) -> BlockStack:
        layers = nn.ModuleList()
        for index in range(start, end):
            with torch.device("meta"):
                layer = self.build_layer(config, index)
            prefix = self.layer_prefix(weight_names, index)
            layers.append(load_state(layer, self.block_state(tensors, prefix), dtype, self.keep_float32, prefix))
        return BlockStack(self, config, start, end, layers)

    def quantize_experts(self, layer: nn.Module, precision) -> int:
        """Store a built decoder layer's stacked experts at `precision` (int8/int4), in place, after the loader's
        `quantize_module` took its nn.Linear layers; returns how many expert modules were replaced. Families with
        experts override this with their layout (see experts.py); dense families have none to replace."""
        return 0

    def block_tensor_names(self, weight_names: list[str], index: int) -> list[str]:
        prefix = self.layer_prefix(weight_names, index)
        return [n for n in weight_names if n.startswith(prefix)]

    def block_parameter_count(self, config) -> int:
        with torch.device("meta"):
            layer = self.build_layer(config, 0)
        return sum(p.numel() for p in layer.parameters())
