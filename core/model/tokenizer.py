"""The tokenizer of an opened checkpoint, for the client: from the model's folder or hub repo, or from a GGUF file.

A GGUF file carries its vocabulary, merges, special tokens and chat template in its metadata; transformers builds
a fast tokenizer from them (this parses the whole vocabulary: about 3 s for a 49k-token vocabulary on a small CPU).
"""

from __future__ import annotations

import os

from potluck.core.model.checkpoint import Checkpoint


def load_tokenizer(checkpoint: Checkpoint):
    """The checkpoint's tokenizer with its chat template, or None when the model ships none (token ids still work)."""
    from transformers import AutoTokenizer

    gguf_path = getattr(checkpoint, "gguf_path", None)  # set on GGUF checkpoints only
    try:
        if gguf_path is not None:
            return _gguf_tokenizer(checkpoint, gguf_path)
        local = os.path.isdir(checkpoint.model)
        return AutoTokenizer.from_pretrained(checkpoint.model, revision=None if local else checkpoint.revision)
    except (OSError, ValueError, KeyError):  # no tokenizer files, or a GGUF without tokenizer metadata
        return None


def _gguf_tokenizer(checkpoint, gguf_path):
    """Built from the GGUF metadata once (seconds), then read back from the cache by the header's digest."""
    from transformers import AutoTokenizer

    from potluck.core.model.gguf_checkpoint import derived_cache_dir

    cached = derived_cache_dir() / f"{checkpoint.revision}-tokenizer"
    if (cached / "tokenizer.json").is_file():
        try:
            return AutoTokenizer.from_pretrained(str(cached))
        except (OSError, ValueError, KeyError):
            pass
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    try:
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        tokenizer.save_pretrained(str(tmp))
        os.replace(tmp, cached) if not cached.exists() else None
    except OSError:  # a cache that cannot be written only costs time next time
        pass
    return tokenizer
