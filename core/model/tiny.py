"""Tiny random-weight models with a small tokenizer, saved sharded like real checkpoints.

Used by the demo, the self-test, the tests and the benchmark: there is no model hub here, and a real model would
not fit a test anyway. Same arguments and seed give the same weights.
"""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("llama", "mistral", "qwen2", "bloom", "qwen3", "qwen3_moe", "mixtral", "gpt_oss", "gemma3")
TINY_SLIDING_WINDOW = 8  # tokens: shorter than the tests' prompts, so their caches really slide
TINY_EXPERTS, TINY_EXPERTS_PER_TOKEN = 8, 2

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
    """A small config of `arch`: grouped-query attention where the head count allows, a sliding window of
    TINY_SLIDING_WINDOW tokens mixed with full attention where the family has one, 8 experts (2 per token) for MoE."""
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
    if arch in _NEW_FAMILIES:
        return _NEW_FAMILIES[arch](llama_like, hidden // heads, layers)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def _qwen3(llama_like: dict, head_dim: int, layers: int):
    from transformers import Qwen3Config

    # blocks from max_window_layers on slide: a mix of full and sliding attention
    return Qwen3Config(**llama_like, head_dim=head_dim, use_sliding_window=True, sliding_window=TINY_SLIDING_WINDOW,
                       max_window_layers=layers // 3, tie_word_embeddings=False)


def _qwen3_moe(llama_like: dict, head_dim: int, layers: int):
    from transformers import Qwen3MoeConfig

    # block 0 keeps a dense feed-forward (mlp_only_layers), the others are sparse; every layer slides
    return Qwen3MoeConfig(**llama_like, head_dim=head_dim, num_experts=TINY_EXPERTS, num_experts_per_tok=TINY_EXPERTS_PER_TOKEN,
                          moe_intermediate_size=llama_like["hidden_size"], mlp_only_layers=[0], norm_topk_prob=True,
                          use_sliding_window=True, sliding_window=TINY_SLIDING_WINDOW)


def _mixtral(llama_like: dict, head_dim: int, layers: int):
    from transformers import MixtralConfig

    return MixtralConfig(**llama_like, head_dim=head_dim, num_local_experts=TINY_EXPERTS // 2,
                         num_experts_per_tok=TINY_EXPERTS_PER_TOKEN, sliding_window=TINY_SLIDING_WINDOW)


def _gpt_oss(llama_like: dict, head_dim: int, layers: int):
    from transformers import GptOssConfig

    # sliding and full attention alternate; YaRN rotary as in the released models
    small = {**llama_like, "intermediate_size": llama_like["hidden_size"]}
    return GptOssConfig(**small, head_dim=head_dim, num_local_experts=TINY_EXPERTS, num_experts_per_tok=TINY_EXPERTS_PER_TOKEN,
                        sliding_window=TINY_SLIDING_WINDOW, rope_parameters={
                            "rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                            "truncate": False, "original_max_position_embeddings": 64})


def _gemma3(llama_like: dict, head_dim: int, layers: int):
    from transformers import Gemma3TextConfig

    # two sliding layers to one global one; local and global rotary differ as in the released models
    kinds = ["sliding_attention" if i % 3 != 2 else "full_attention" for i in range(layers)]
    return Gemma3TextConfig(**llama_like, head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=TINY_SLIDING_WINDOW,
                            layer_types=kinds, final_logit_softcapping=30.0, rope_parameters={
                                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0}})


_NEW_FAMILIES = {"qwen3": _qwen3, "qwen3_moe": _qwen3_moe, "mixtral": _mixtral, "gpt_oss": _gpt_oss, "gemma3": _gemma3}


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
