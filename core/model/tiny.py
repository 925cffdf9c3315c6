"""Tiny random-weight models with a small tokenizer, saved sharded like real checkpoints.

Used by the demo, the self-test, the tests and the benchmark: there is no model hub here, and a real model would
not fit a test anyway. Same arguments and seed give the same weights.
"""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("llama", "mistral", "qwen2", "bloom")

# Text the tokenizer learns its merges from: enough to give common English pieces their own tokens.
_TOKENIZER_TEXT = """\
Potluck pools the computers of a handful of friends into one private swarm. Each friend's computer hosts a few
consecutive blocks of a large language model, sized to the memory it has free. A client sends each token's hidden
state through the chain of servers, the servers keep the attention cache, and the output equals what the whole
model would compute on one machine. Friends join by pasting an invite code. The app sits in the system tray: a
toggle pauses serving, a dashboard shows what this computer gives, and a chat window talks to the pooled model.
Hello! How are you today? I am fine, thank you. What would you like to talk about? Tell me a story about a cat,
a dog, the sea, the mountains, the city at night, and the stars above the quiet village.
"""
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tokenizer(vocab_size: int = 384):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_TOKENIZER_TEXT] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(arch: str, *, layers: int, hidden: int, vocab_size: int):
    from transformers import BloomConfig, LlamaConfig, MistralConfig, Qwen2Config

    heads = max(2, hidden // 32)
    common = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    if arch == "bloom":
        return BloomConfig(hidden_size=hidden, n_layer=layers, n_head=heads, **common)
    kv_heads = heads // 2 if heads % 2 == 0 else heads  # grouped-query attention where the head count allows
    llama_like = dict(
        hidden_size=hidden, intermediate_size=hidden * 2 + hidden // 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=2048, **common,
    )
    if arch == "llama":
        return LlamaConfig(**llama_like)
    if arch == "mistral":
        return MistralConfig(**llama_like, sliding_window=4096)
    if arch == "qwen2":
        return Qwen2Config(**llama_like, tie_word_embeddings=True)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def make_tiny_model(
    arch: str, out: str | Path, *, layers: int = 8, hidden: int = 256, seed: int = 0, shard_size: str = "200KB",
) -> Path:
    """Write a random-weight model and its tokenizer to `out`; returns the folder."""
    import torch
    from transformers import AutoModelForCausalLM

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if layers < 1 or hidden < 32 or hidden % 32:
        raise ValueError("need at least 1 layer and a hidden size that is a positive multiple of 32")
    out = Path(out)
    tokenizer = make_tokenizer()
    config = tiny_config(arch, layers=layers, hidden=hidden, vocab_size=len(tokenizer))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # default init is near-zero for some layers: widen it so outputs vary with the input
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.08)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size=shard_size)
    tokenizer.save_pretrained(out)
    return out
