"""Architecture families: how to build a range of transformer blocks and the client-side parts of a model.

Each family knows its checkpoint's tensor names, how to build decoder layers with their *absolute* layer indices
(so a server for blocks 4-7 keeps cache slots 4-7) from the installed transformers layer classes, how to run them
exactly as the whole model would (positions and masks sized against the server's first layer; see
shared/ENGINE_NOTES.md), and what a block's weights are (for memory plans and per-token reads).

Files and roles:

- `base.py`: `BlockStack` (blocks [start, end), with `new_cache()` / `rollback()` for sessions), `ClientParts`,
  the `Family` contract, loading helpers.
- `decoder.py`: `DecoderFamily`, the shared runner of rotary decoders (Llama and its descendants).
- `cache.py`: a session's cache; sliding-window layers keep their window plus a rollback margin.
- `experts.py`: `QuantizedExperts`, mixture-of-experts weights at int8/int4 (the families' `quantize_experts` hook).
- `shapes.py`: a block's weights as shapes (pure): block bytes, bytes one token reads, a sentence for the dashboard.
- one module per family: `llama.py` (Llama 2/3, Mistral, Qwen2), `bloom.py`, `qwen3.py`, `qwen3_moe.py`,
  `mixtral.py`, `gpt_oss.py`, `gemma3.py`.

Adding a family is one module (usually a `DecoderFamily` subclass naming its transformers classes and listing its
block weights) plus its entry in `FAMILIES`, a tiny config in `core/model/tiny.py`, and a row in the tests' tables.
"""

from __future__ import annotations

from potluck.core.model.families.base import (
    ROLLBACK_MARGIN_TOKENS,
    BlockStack,
    CacheRollbackError,
    ClientParts,
    ClientTensorNames,
    Family,
    UnsupportedModelError,
)
from potluck.core.model.families.bloom import BloomFamily
from potluck.core.model.families.gemma3 import Gemma3Family
from potluck.core.model.families.gpt_oss import GptOssFamily
from potluck.core.model.families.llama import LlamaFamily
from potluck.core.model.families.mixtral import MixtralFamily
from potluck.core.model.families.qwen3 import Qwen3Family
from potluck.core.model.families.qwen3_moe import Qwen3MoeFamily

FAMILIES: tuple[Family, ...] = (
    LlamaFamily(), BloomFamily(), Qwen3Family(), Qwen3MoeFamily(), MixtralFamily(), GptOssFamily(), Gemma3Family(),
)

__all__ = ["BlockStack", "CacheRollbackError", "ClientParts", "ClientTensorNames", "Family", "FAMILIES", "ROLLBACK_MARGIN_TOKENS",
           "UnsupportedModelError", "family_for"]


def family_for(config) -> Family:
    for family in FAMILIES:
        if config.model_type in family.model_types:
            return family
    supported = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise UnsupportedModelError(f"model type {config.model_type!r} is not supported yet (supported: {supported})")
