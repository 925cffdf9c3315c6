"""Open a GGUF file (llama.cpp's single-file format) as a `Checkpoint` that reads only the tensors a caller needs.

The config and the tensor names are what transformers' own GGUF loader makes of the file: the config comes from
`transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint(path, return_tensors=False)` (metadata only), the
GGUF -> Hugging Face name map from transformers' `get_gguf_hf_weights_map` over a model built on the meta device,
and each tensor goes through transformers' tensor processor for the file's architecture (for llama, Q and K are
permuted back), so a block's weights are bit for bit what `from_pretrained(..., gguf_file=...)` would give it.

Tensor data is memory-mapped and read tensor by tensor (see gguf_file.py): a server of blocks 10-19 reads only
their bytes, down to the pages the operating system reads, and a client only the embedding, final norm and head.
Quantized tensors are dequantized at load time to float32 with the `gguf` package (Q8_0, Q4_0, Q4_1, Q5_x, the
K-quants, F16, BF16, F32, ...).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from potluck.core import paths
from potluck.core.model.checkpoint import Checkpoint, CheckpointError
from potluck.core.model.families import UnsupportedModelError
from potluck.core.model.gguf_file import (
    TensorSpan,
    can_dequantize,
    dequantize,
    open_mapped,
    read_header,
    read_span,
    type_name,
)

# GGUF `general.architecture` values Potluck can split (Mistral GGUFs from llama.cpp say "llama").
SUPPORTED_ARCHITECTURES = ("llama", "qwen2")
GGUF_SUFFIX = ".gguf"


@dataclass(kw_only=True)
class GGUFCheckpoint(Checkpoint):
    """A `Checkpoint` over one GGUF file; `load_tensors` gives float32 tensors as transformers would load them."""
    gguf_path: Path
    architecture: str  # the file's general.architecture
    display_name: str  # readable part of the uid: the model's name in the metadata, and its quantization
    spans: dict[str, TensorSpan] = field(repr=False)  # Hugging Face tensor name -> where it lies in the file
    file_size_bytes: int = field(repr=False)
    byte_ranges_read: list[tuple[int, int]] = field(default_factory=list, repr=False)  # [start, end) of each tensor read

    @property
    def uid(self) -> str:
        return f"{self.display_name[:48]}@{self.revision[:12]}"

    def load_tensors(self, names: Iterable[str]) -> dict:
        """Read exactly these tensors' bytes, dequantize them to float32, and transform them as transformers does."""
        import torch

        names = list(names)
        self.files_for(names)  # raises on a missing name
        processor = _tensor_processor(self.architecture, self.config_dict)
        self.files_opened.append(self.gguf_path.name)
        tensors = {}
        with open_mapped(self.gguf_path) as buffer:
            if len(buffer) != self.file_size_bytes:
                raise CheckpointError(f"{self.gguf_path} changed since it was opened ({self.file_size_bytes} bytes, "
                                      f"now {len(buffer)}); restart to open it again")
            for name in sorted(set(names), key=lambda n: self.spans[n].start):  # one pass through the file
                span = self.spans[name]
                raw = read_span(buffer, span)
                self.byte_ranges_read.append((span.start, span.end))
                try:
                    weights = dequantize(raw, span)
                except (ValueError, NotImplementedError) as e:
                    raise CheckpointError(f"{self.gguf_path}: cannot unpack tensor {span.gguf_name}: {e}") from e
                result = processor.process(weights=weights, name=span.gguf_name, tensor_key_mapping={},
                                           parsed_parameters={"config": self.config_dict})
                weights = result.weights
                if not (weights.flags.writeable and weights.flags.c_contiguous):
                    weights = np.array(weights)
                tensors[name] = torch.from_numpy(weights).to(torch.float32)
        return tensors


def _tensor_processor(architecture: str, config_dict: dict):
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    return TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=config_dict)


def open_gguf(path: str | os.PathLike, model: str | None = None) -> GGUFCheckpoint:
    """Open a GGUF file: config and tensor names from its header; no tensor data is read.

    `model` is what the user asked for (the file or its folder); it defaults to the file's path.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such GGUF file")
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files with it too)
    except ImportError:
        raise CheckpointError(f"opening {path.name} needs the gguf package: pip install gguf") from None
    header = read_header(path)
    architecture = header.architecture
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{path.name} is a GGUF of architecture {architecture or 'unknown'!r}; Potluck runs GGUF files of "
            f"architecture {', '.join(SUPPORTED_ARCHITECTURES)} (Llama, Mistral, Qwen2 and their fine-tunes)")
    if header.metadata.get(f"{architecture}.expert_count"):  # Mixtral-style files say "llama" too
        raise UnsupportedModelError(f"{path.name} is a mixture-of-experts GGUF, which Potluck cannot run from GGUF "
                                    f"yet; use the model's transformers folder instead")
    if int(header.metadata.get("split.count", 1) or 1) > 1:
        raise CheckpointError(f"{path.name} is one part of a split GGUF; merge the parts into one file first "
                              f"(llama.cpp's `llama-gguf-split --merge`)")
    cached = _read_cache(header.digest)
    if cached is not None:
        config_dict, gguf_to_hf = cached
    else:
        config_dict = _config_dict(path)
        gguf_to_hf = _name_map(config_dict, architecture, (span.gguf_name for span in header.tensors), path)
        _write_cache(header.digest, config_dict, gguf_to_hf)
    spans = {gguf_to_hf[span.gguf_name]: span for span in header.tensors if span.gguf_name in gguf_to_hf}
    unreadable = sorted({type_name(s.ggml_type) for s in spans.values() if not can_dequantize(s.ggml_type)})
    if unreadable:
        raise CheckpointError(f"{path.name} stores tensors as {', '.join(unreadable)}, which the installed gguf "
                              f"package cannot unpack; use a file quantized as Q8_0, Q6_K, Q5_K_M, Q4_K_M or Q4_0")

    def fetch(file_name: str) -> Path:
        if file_name != path.name:
            raise CheckpointError(f"{path} holds no file {file_name}")
        return path

    return GGUFCheckpoint(
        model=str(model) if model is not None else str(path),
        revision=header.digest,
        config_dict=config_dict,
        weight_map={name: path.name for name in spans},
        fetch=fetch,
        gguf_path=path,
        architecture=architecture,
        display_name=_display_name(header.metadata, path),
        spans=spans,
        file_size_bytes=header.file_size_bytes,
    )


def derived_cache_dir() -> Path:
    """Where what is derived from a GGUF header (config, tensor names, tokenizer) is kept, by the header's digest:
    building them takes transformers seconds; reading them back, milliseconds."""

    return paths.cache_dir() / "gguf"


def _read_cache(digest: str) -> tuple[dict, dict] | None:
    try:
        data = json.loads((derived_cache_dir() / f"{digest}.json").read_text(encoding="utf-8"))
        config, names = data["config"], data["names"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(config, dict) or not isinstance(names, dict) or not config.get("model_type"):
        return None
    return config, names


def _write_cache(digest: str, config: dict, names: dict) -> None:

    try:
        folder = paths.ensure_dir(derived_cache_dir())
        tmp = folder / f".{digest}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"config": config, "names": names}), encoding="utf-8")
        os.replace(tmp, folder / f"{digest}.json")
    except (OSError, TypeError, ValueError):  # a cache that cannot be written only costs time next time
        pass


def _config_dict(path: Path) -> dict:
    """The Hugging Face config dict, as transformers builds it for these architectures (metadata only)."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        config = dict(load_gguf_checkpoint(str(path), return_tensors=False)["config"])
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot read its GGUF metadata: {e}") from e
    config.pop("quantization_config", None)
    if not config.get("model_type"):
        raise CheckpointError(f"{path}: the GGUF metadata gives no model type")
    return config


_BLOCK_NAME = re.compile(r"blk\.(\d+)\.(.+)")
_LAYER_PREFIX = "model.layers.0."


def _name_map(config_dict: dict, architecture: str, gguf_names: Iterable[str], path: Path) -> dict[str, str]:
    """GGUF tensor name -> Hugging Face name, by transformers' own mapping (`get_gguf_hf_weights_map`).

    transformers maps the names of a whole model, rebuilding gguf's name table for every submodule: minutes for
    a 70B. The blocks of these architectures are alike, so this maps a one-block model built on the meta device
    and carries block 0's names over to every block.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import get_gguf_hf_weights_map

    kwargs = dict(config_dict, num_hidden_layers=1)
    model_type = kwargs.pop("model_type")
    try:
        config = AutoConfig.for_model(model_type, **kwargs)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot build a {model_type} model from its GGUF metadata: {e}") from e
    # The file's architecture names the tensors: llama.cpp writes Mistral models as "llama".
    one_block = get_gguf_hf_weights_map(model, _tensor_processor(architecture, config_dict), model_type=architecture,
                                        num_layers=1)
    mapping = {}
    for gguf_name in gguf_names:
        block = _BLOCK_NAME.fullmatch(gguf_name)
        if block is None:
            hf_name = one_block.get(gguf_name)
        else:
            hf_name = one_block.get(f"blk.0.{block[2]}")
            if hf_name is not None:
                if not hf_name.startswith(_LAYER_PREFIX):
                    raise CheckpointError(f"{path}: tensor {gguf_name} maps to {hf_name}, outside the model's layers")
                hf_name = f"model.layers.{block[1]}.{hf_name[len(_LAYER_PREFIX):]}"
        if hf_name is not None:  # transformers skips what it cannot map (llama 3's rope_freqs.weight, ...)
            mapping[gguf_name] = hf_name
    return mapping


def _display_name(metadata: dict, path: Path) -> str:
    """The model's name from the metadata (so renamed copies of one file agree) and its quantization."""
    from gguf import LlamaFileType

    name = metadata.get("general.name") if isinstance(metadata.get("general.name"), str) else None
    label = path.name[: -len(GGUF_SUFFIX)] if path.name.lower().endswith(GGUF_SUFFIX) else path.name
    if name:
        label = name
        try:
            label += "-" + LlamaFileType(metadata.get("general.file_type")).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "gguf"

