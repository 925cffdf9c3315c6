"""Choosing a model: sizes at each precision computed from configs, fit lines in words, unsupported ones refused."""

import pytest
import torch

from potluck.core.model.catalog import CATALOG, ModelSize, fit_line, size_from_config, size_of
from potluck.core.model.families import UnsupportedModelError
from potluck.core.model.loading import load_blocks, open_model
from potluck.core.numbers import GIB

SIZE = ModelSize("m", 80, {"none": 130 * GIB, "int8": 70 * GIB, "int4": 40 * GIB}, "bfloat16")


@pytest.mark.parametrize("precision, free, words", [
    ("int4", 14 * GIB, "at int4 it needs about 40.0 GiB; this PC has 14.0 GiB free: about 4 PCs like this one"),
    ("int4", 42 * GIB, "at int4 it needs about 40.0 GiB; this PC has 42.0 GiB free: this PC alone can hold it"),
    ("none", 34 * GIB, "at full precision it needs about 130 GiB; this PC has 32.0 GiB free: about 5 PCs like this one"
     .replace("32.0", "34.0")),
    ("int8", 2 * GIB, "at int8 it needs about 70.0 GiB; this PC has 2.0 GiB free: too little to host even part of it"),
])
def test_fit_line(precision, free, words):
    assert fit_line(SIZE, precision, free) == words


@pytest.mark.parametrize("model_id, params_b", [
    ("meta-llama/Llama-3.1-70B-Instruct", 68.45),  # blocks only (the published 70.6 B includes embeddings and head)
    ("meta-llama/Llama-3.1-8B-Instruct", 6.98),
])
def test_short_list_sizes_follow_the_published_shapes(model_id, params_b):
    size = size_of(model_id)
    assert size.blocks_bytes["none"] == pytest.approx(params_b * 1e9 * 2, rel=0.01)  # bfloat16 checkpoints
    assert size.blocks_bytes["int8"] < 0.55 * size.blocks_bytes["none"] < size.blocks_bytes["none"]
    assert size.blocks_bytes["int4"] < 0.33 * size.blocks_bytes["none"]


def test_the_short_lists_stored_sizes_are_what_its_configs_give():
    for entry in CATALOG:
        computed = size_from_config(entry.config, entry.model_id)
        assert (entry.size.num_blocks, entry.size.blocks_bytes) == (computed.num_blocks, computed.blocks_bytes), entry


def test_the_catalog_loads_no_engine():
    import subprocess
    import sys

    code = ("import sys; from potluck.core.model.catalog import CATALOG, fit_line; "
            "[fit_line(e.size, 'int4', 2**34) for e in CATALOG]; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_the_builtin_size_is_what_its_blocks_hold():
    spec = open_model("builtin")
    stack = load_blocks(spec, 0, 3, torch.float32)
    held = sum(t.numel() * t.element_size() for t in [*stack.parameters(), *stack.buffers()])
    per_block = size_of("builtin").blocks_bytes["none"] / spec.num_blocks
    assert abs(held - 3 * per_block) < 4096


def test_an_unsupported_architecture_is_refused_with_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "n_layer": 2}')
    with pytest.raises(UnsupportedModelError, match="not supported yet.*llama.*gpt_oss"):
        size_of(str(tmp_path))
