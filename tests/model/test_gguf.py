"""GGUF checkpoints: the same tensors and greedy tokens as transformers' own GGUF loader, only the needed bytes read.

The tiny GGUF files are converted from random-weight transformers models by `gguf_files.write_gguf` (llama, mistral
and qwen2; F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K) and loaded both ways.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from potluck.core.model.checkpoint import CheckpointError, open_checkpoint
from potluck.core.model.families import UnsupportedModelError
from potluck.core.model.gguf_file import TensorSpan, _Cursor, _dequantize_fast, dequantize, type_name
from potluck.core.model.loading import load_blocks, load_client_parts, open_model
from potluck.core.model.tiny import CHAT_TEMPLATE, make_tiny_model
from potluck.core.model.tokenizer import load_tokenizer

from .gguf_files import CASES, K_QUANTS, gguf_file, greedy, reference, spans_of, write_gguf

PROMPT = [5, 17, 33, 2, 40, 99, 120, 7, 8, 9]
NEW_TOKENS = 10


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory):
    """case -> a folder holding one GGUF file (3 blocks each)."""
    root = tmp_path_factory.mktemp("gguf")
    folders = {}
    for case, (arch, hidden, types, name) in CASES.items():
        model_dir = make_tiny_model(arch, root / f"{case}-hf", layers=3, hidden=hidden, seed=7, shard_size="50MB")
        folders[case] = root / case
        folders[case].mkdir()
        write_gguf(model_dir, folders[case] / f"{case}.gguf", name=name, types=types)
    return folders


@pytest.mark.parametrize("case", list(CASES))
def test_tensors_and_greedy_tokens_match_transformers(ggufs, case):
    path = gguf_file(ggufs[case])
    spec = open_model(str(ggufs[case]))  # the folder form
    stored = {type_name(span.ggml_type) for span in spec.checkpoint.spans.values()}
    assert stored >= set(CASES[case][2].values()) | {"F32"}  # the file really holds the types this case is about
    model, ref_tokens, ref_logits = reference(path, PROMPT, NEW_TOKENS)
    assert spec.config.model_type == model.config.model_type
    for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "vocab_size",
                "rms_norm_eps", "tie_word_embeddings", "head_dim"):
        assert getattr(spec.config, key, None) == getattr(model.config, key, None), key
    assert spec.config.rope_parameters["rope_theta"] == model.config.rope_parameters["rope_theta"]

    theirs = model.state_dict()
    ours = spec.checkpoint.load_tensors(list(spec.checkpoint.weight_map))
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    assert set(ours) == set(theirs) - tied
    for name, tensor in ours.items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, theirs[name]), name

    tokens, logits = greedy(spec, [(0, 1), (1, 3)], PROMPT, NEW_TOKENS)
    assert tokens == ref_tokens
    for step, (a, b) in enumerate(zip(logits, ref_logits)):  # every logit, not just the winner (tiny tied models repeat)
        assert a.std() > 0 and (a - b).abs().max().item() < 1e-4, f"step {step}"


@pytest.mark.parametrize("case", ["llama-mixed", "qwen2-mixed"])
def test_server_and_client_read_only_their_tensors_bytes(ggufs, case):
    spec = open_model(str(gguf_file(ggufs[case])))
    checkpoint = spec.checkpoint
    load_blocks(spec, 1, 2)
    block_1 = [n for n in checkpoint.weight_map if n.startswith("model.layers.1.")]
    assert len(block_1) >= 9 and sorted(checkpoint.byte_ranges_read) == spans_of(checkpoint, block_1)
    everything_else = [span for n, span in checkpoint.spans.items() if n not in block_1]
    for start, end in checkpoint.byte_ranges_read:  # no byte of another tensor was materialised
        assert all(end <= other.start or other.end <= start for other in everything_else)

    checkpoint.byte_ranges_read.clear()
    load_client_parts(spec)
    client = ["model.embed_tokens.weight", "model.norm.weight"] + (["lm_head.weight"] if "lm_head.weight" in checkpoint.weight_map else [])
    assert sorted(checkpoint.byte_ranges_read) == spans_of(checkpoint, client)
    assert ("lm_head.weight" in checkpoint.weight_map) == (case == "llama-mixed")  # qwen2's head is its embedding


def test_a_file_named_mistral_opens_as_mistral_with_the_same_tensors(ggufs, tmp_path):
    """transformers turns a llama GGUF whose general.name is exactly "mistral" into a Mistral config."""
    source = ggufs["mistral-kquants"].parent / "mistral-kquants-hf"
    renamed = write_gguf(source, tmp_path / "m.gguf", name="mistral", types=K_QUANTS)
    as_llama, as_mistral = open_checkpoint(str(gguf_file(ggufs["mistral-kquants"]))), open_checkpoint(str(renamed))
    assert (as_llama.config_dict["model_type"], as_mistral.config_dict["model_type"]) == ("llama", "mistral")
    assert as_mistral.weight_map.keys() == as_llama.weight_map.keys()
    names = [n for n in as_llama.weight_map if n.startswith("model.layers.2.")]
    a, b = as_llama.load_tensors(names), as_mistral.load_tensors(names)
    assert all(torch.equal(a[n], b[n]) for n in names)
    assert open_model(str(renamed)).family.name == "llama"


def test_uid_is_readable_stable_and_follows_the_content(ggufs, tmp_path):
    path = gguf_file(ggufs["llama-mixed"])
    uid = open_checkpoint(str(path)).uid
    assert uid.startswith("Tiny-Llama") and "@" in uid
    assert open_checkpoint(str(ggufs["llama-mixed"])).uid == uid  # the folder form
    copy = tmp_path / "renamed-by-a-friend.gguf"
    shutil.copyfile(path, copy)
    assert open_checkpoint(str(copy)).uid == uid  # the name comes from the metadata, not the file name
    other = open_checkpoint(str(gguf_file(ggufs["llama-f32"]))).uid  # same weights, another quantization
    assert other.split("@")[1] != uid.split("@")[1]


@pytest.mark.slow
def test_uid_is_the_same_in_another_process(ggufs):
    path = gguf_file(ggufs["llama-mixed"])
    code = f"from potluck.core.model.checkpoint import open_checkpoint; print(open_checkpoint({str(path)!r}).uid)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == open_checkpoint(str(path)).uid, out.stderr[-2000:]


def test_tokenizer_from_gguf_matches_the_original(ggufs):
    original = AutoTokenizer.from_pretrained(ggufs["llama-mixed"].parent / "llama-mixed-hf")
    tokenizer = load_tokenizer(open_checkpoint(str(gguf_file(ggufs["llama-mixed"]))))
    assert tokenizer is not None and tokenizer.chat_template == CHAT_TEMPLATE
    text = "Hello! How are you today? Tell me a story about the sea."
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == original(text, add_special_tokens=False)["input_ids"]
    messages = [{"role": "user", "content": "Hello!"}]
    ours = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ours) == list(original.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
    assert load_tokenizer(open_checkpoint(str(ggufs["llama-mixed"].parent / "llama-mixed-hf"))) is not None  # folder form


def test_gguf_without_tokenizer_gives_none(ggufs, tmp_path):
    path = write_gguf(ggufs["llama-f32"].parent / "llama-f32-hf", tmp_path / "bare.gguf", name="bare", types={},
                      tokenizer=False)
    checkpoint = open_checkpoint(str(path))
    assert checkpoint.config_dict["vocab_size"] > 0 and load_tokenizer(checkpoint) is None


def _other_architecture(folder, arch, **extra):
    writer = gguf.GGUFWriter(str(folder / f"{arch}.gguf"), arch)
    writer.add_name(f"tiny {arch}")
    writer.add_block_count(1)
    for key, value in extra.items():
        writer.add_uint32(key, value)
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return folder / f"{arch}.gguf"


@pytest.mark.parametrize("arch", ["gpt2", "qwen3", "bloom"])
def test_other_architectures_are_refused_naming_the_supported_ones(tmp_path, arch):
    path = _other_architecture(tmp_path, arch)
    with pytest.raises(UnsupportedModelError, match=f"architecture '{arch}'.*llama, qwen2"):
        open_model(str(path))


@pytest.mark.parametrize("extra,error,message", [
    ({"llama.expert_count": 8}, UnsupportedModelError, "mixture-of-experts"),  # Mixtral files say "llama"
    ({"split.count": 3}, CheckpointError, "split GGUF"),
])
def test_moe_and_split_files_are_refused(tmp_path, extra, error, message):
    with pytest.raises(error, match=message):
        open_checkpoint(str(_other_architecture(tmp_path, "llama", **extra)))


def _cut(path, out, keep):
    data = path.read_bytes()
    out.write_bytes(data[: keep(len(data))])
    return out


@pytest.mark.parametrize("keep,message", [
    (lambda n: n - 1000, "truncated: its tensors need"),  # the data section cut short
    (lambda n: 200, "header is cut off"),  # inside the metadata
    (lambda n: 3, "not a GGUF file"),
    (lambda n: 0, "is empty"),
])
def test_truncated_files_give_a_clear_error(ggufs, tmp_path, keep, message):
    path = _cut(gguf_file(ggufs["llama-mixed"]), tmp_path / "cut.gguf", keep)
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(str(path))


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1"])
@pytest.mark.parametrize("shape", [(32,), (3, 64), (7, 2, 96)])
def test_the_fast_block_types_unpack_bit_for_bit_as_gguf_does(qtype, shape):
    kind = gguf.GGMLQuantizationType[qtype]
    byte_shape = gguf.quants.quant_shape_to_byte_shape(shape, kind)
    raw = np.random.default_rng(sum(shape)).integers(0, 256, size=byte_shape, dtype=np.uint8).tobytes()  # any scale
    fast = _dequantize_fast(raw, qtype, shape)
    assert np.array_equal(dequantize(raw, TensorSpan("w", kind.value, shape, 0, len(raw))), fast, equal_nan=True)
    with np.errstate(all="ignore"):  # random float16 scales include inf and NaN
        slow = gguf.dequantize(np.frombuffer(raw, dtype=np.uint8).reshape(byte_shape), kind)
    assert fast.dtype == np.float32 and fast.shape == slow.shape == shape
    assert np.array_equal(fast, slow, equal_nan=True)


def _strings(*texts: bytes) -> bytes:
    return b"".join(len(t).to_bytes(8, "little") + t for t in texts)


@pytest.mark.parametrize("data,count,end", [
    (_strings(b"hello", b"", "é".encode()), 3, 5 + 8 + 8 + 2 + 8),
    (_strings(b"a", b"b") + b"rest", 2, 18),  # stops after its strings
    (b"", 0, 0),
    (_strings(b"\xff\xfe"), 1, 10),  # skipped strings are not decoded (the vocabulary is not kept)
])
def test_a_string_array_is_skipped_to_its_end(tmp_path, data, count, end):
    cursor = _Cursor(data, tmp_path / "x.gguf")
    cursor.skip_strings(count)
    assert cursor.pos == end


@pytest.mark.parametrize("data,count", [
    (_strings(b"hello")[:-1], 1),  # inside the last string
    (_strings(b"hello")[:5], 1),  # inside a length
    (_strings(b"a"), 2),  # a string missing
    ((2**62).to_bytes(8, "little") + b"x", 1),  # a length past the end
])
def test_a_string_array_cut_short_says_so(tmp_path, data, count):
    with pytest.raises(CheckpointError, match="header is cut off"):
        _Cursor(data, tmp_path / "x.gguf").skip_strings(count)


def test_not_a_gguf_and_unknown_versions(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(CheckpointError, match="not a GGUF file"):
        open_checkpoint(str(tmp_path / "x.gguf"))
    (tmp_path / "y.gguf").write_bytes(b"GGUF" + (7).to_bytes(4, "little") + bytes(100))
    with pytest.raises(CheckpointError, match="GGUF version 7"):
        open_checkpoint(str(tmp_path / "y.gguf"))


def test_folders_and_paths(ggufs, tmp_path):
    two = tmp_path / "two"
    two.mkdir()
    for case in ("llama-mixed", "llama-f32"):
        shutil.copyfile(gguf_file(ggufs[case]), two / f"{case}.gguf")
    with pytest.raises(CheckpointError, match="holds 2 .gguf files"):
        open_checkpoint(str(two))
    with pytest.raises(CheckpointError, match="no such GGUF file"):
        open_checkpoint(str(tmp_path / "missing.gguf"))
    # a transformers folder that also holds a .gguf is still read as a transformers folder
    both = tmp_path / "both"
    shutil.copytree(ggufs["llama-mixed"].parent / "llama-mixed-hf", both)
    shutil.copyfile(gguf_file(ggufs["llama-mixed"]), both / "extra.gguf")
    assert not hasattr(open_checkpoint(str(both)), "gguf_path")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        open_checkpoint(str(empty))
