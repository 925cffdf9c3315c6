"""A server reads only its blocks' tensors, from only the files that hold them; bad models fail clearly."""

import json
import shutil

import pytest
import torch

from potluck.core.model.checkpoint import CheckpointError, open_checkpoint
from potluck.core.model.families import UnsupportedModelError
from potluck.core.model.loading import DtypeError, load_blocks, load_client_parts, open_model, parse_dtype
from potluck.core.model.tiny import make_tiny_model


def needed_files(spec, start, end):
    names = list(spec.checkpoint.weight_map)
    wanted = [n for i in range(start, end) for n in spec.family.block_tensor_names(names, i)]
    return set(spec.checkpoint.files_for(wanted))


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_only_the_needed_shards_are_read(tiny_models, tmp_path, arch):
    spec = open_model(str(tiny_models[arch]))
    all_files = set(spec.checkpoint.weight_map.values())
    wanted = needed_files(spec, 2, 4)
    assert 1 <= len(wanted) < len(all_files) // 2  # the tiny model is sharded finely enough for this to mean something

    pruned = tmp_path / "pruned"
    shutil.copytree(tiny_models[arch], pruned)
    for name in all_files - wanted:
        (pruned / name).unlink()  # a server for blocks 2-3 must not need these
    pruned_spec = open_model(str(pruned))
    stack = load_blocks(pruned_spec, 2, 4)
    assert (stack.start, stack.end) == (2, 4)
    assert set(pruned_spec.checkpoint.files_opened) == wanted

    with pytest.raises(CheckpointError, match="lacks"):
        load_blocks(pruned_spec, 0, 2)  # the control: those blocks' shards really are gone


def test_single_file_checkpoint(tmp_path):
    model_dir = make_tiny_model("llama", tmp_path / "one", layers=2, hidden=64, shard_size="50MB")
    assert (model_dir / "model.safetensors").exists() and not (model_dir / "model.safetensors.index.json").exists()
    spec = open_model(str(model_dir))
    assert load_blocks(spec, 1, 2).end == 2
    assert load_client_parts(spec).lm_head.weight.shape[0] == spec.config.vocab_size


def test_uid_is_stable_and_content_addressed(tiny_models, tmp_path):
    a, b = open_checkpoint(str(tiny_models["llama"])), open_checkpoint(str(tiny_models["llama"]))
    assert a.uid == b.uid and a.uid.startswith("llama@")
    assert open_checkpoint(str(tiny_models["qwen2"])).uid != a.uid


@pytest.mark.parametrize("name,device,expected", [
    ("float32", "cpu", torch.float32), ("fp32", "cpu", torch.float32), ("bfloat16", "cpu", torch.bfloat16),
    ("bf16", "cpu", torch.bfloat16), ("float16", "cuda", torch.float16), ("fp16", "cuda:1", torch.float16),
])
def test_parse_dtype(name, device, expected):
    assert parse_dtype(name, device) is expected


@pytest.mark.parametrize("name,device,message", [
    ("float16", "cpu", "only for GPUs"), ("half", "cpu", "only for GPUs"), ("int8", "cpu", "unknown dtype"),
])
def test_parse_dtype_refuses(name, device, message):
    with pytest.raises(DtypeError, match=message):
        parse_dtype(name, device)


def test_bfloat16_blocks_run(tiny_models):
    spec = open_model(str(tiny_models["llama"]))
    stack = load_blocks(spec, 0, 2, torch.bfloat16)
    assert next(stack.parameters()).dtype is torch.bfloat16
    out = stack(torch.randn(1, 3, spec.hidden_size, dtype=torch.bfloat16))
    assert out.shape == (1, 3, spec.hidden_size) and torch.isfinite(out).all()


def test_block_range_outside_model(tiny_models):
    spec = open_model(str(tiny_models["llama"]))
    with pytest.raises(ValueError, match="outside"):
        load_blocks(spec, 4, 9)


@pytest.mark.parametrize("break_it,message", [
    (lambda d: (d / "config.json").unlink(), "no config.json"),
    (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "model.safetensors.index.json").write_text('{"weight_map": 3}'), "no valid weight_map"),
])
def test_broken_model_folder(tiny_models, tmp_path, break_it, message):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["llama"], broken)
    break_it(broken)
    with pytest.raises(CheckpointError, match=message):
        open_model(str(broken))


def test_truncated_shard_is_reported(tiny_models, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["llama"], broken)
    spec = open_model(str(broken))
    victim = sorted(needed_files(spec, 0, 1))[0]
    (broken / victim).write_bytes((broken / victim).read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_blocks(open_model(str(broken)), 0, 1)


def test_unsupported_architecture(tiny_models, tmp_path):
    other = tmp_path / "gpt2ish"
    shutil.copytree(tiny_models["llama"], other)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "gpt2"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="not supported"):
        open_model(str(other))


@pytest.mark.parametrize("model,message", [("/no/such/folder", "neither a folder"), ("not a model id!", "neither a folder")])
def test_missing_model(model, message):
    with pytest.raises(CheckpointError, match=message):
        open_model(model)
