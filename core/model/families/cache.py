"""A session's attention cache: sliding-window layers keep only their window, plus a margin to roll back into.

transformers' `DynamicCache(config=...)` gives sliding layers a `DynamicSlidingWindowLayer` that keeps
`window - 1` tokens and refuses `crop` once the window is full, so a server could not retry or replay a step
(nor undo rejected speculative tokens) on such a layer. `RollbackSlidingWindowLayer` keeps
`window - 1 + margin_tokens` tokens instead:

- what attention sees is exactly what transformers' own layer would give it: the last `window - 1` cached tokens
  plus the new ones, with the same mask sizes and offsets (so masks built by transformers' mask functions are the
  same as for the whole model, chunked prefill across the window boundary included);
- a rollback of up to `margin_tokens` tokens is exact; a rollback further back than what is kept raises
  `CacheRollbackError` before anything changes (the client then replays the session from its history).

Memory per sliding layer: at most `window - 1 + margin_tokens` tokens per session, whatever the session's length.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

ROLLBACK_MARGIN_TOKENS = 64  # how far back a sliding-window layer's cache can always be rolled back (speculative steps ~16)


class CacheRollbackError(ValueError):
    """The cache no longer holds the tokens a rollback needs; replay the session from its history instead."""


class RollbackSlidingWindowLayer(DynamicLayer):
    """A sliding-window layer that keeps `window - 1 + margin_tokens` tokens, so short rollbacks stay exact."""

    is_sliding = True

    def __init__(self, sliding_window: int, margin_tokens: int = ROLLBACK_MARGIN_TOKENS):
        super().__init__()
        if sliding_window < 1 or margin_tokens < 0:
            raise ValueError(f"need a sliding window of at least 1 and a margin >= 0, not {sliding_window}, {margin_tokens}")
        self.sliding_window, self.margin_tokens = sliding_window, margin_tokens
        self.cumulative_length = 0  # tokens seen since position 0

    @property
    def kept_limit(self) -> int:
        return self.sliding_window - 1 + self.margin_tokens

    @property
    def kept_tokens(self) -> int:
        return 0 if not self.is_initialized or self.keys.numel() == 0 else self.keys.shape[-2]

    def _visible_past(self) -> int:
        """Cached tokens the next step attends to: the same as transformers' sliding layer keeps."""
        return min(self.kept_tokens, self.sliding_window - 1)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        skip = self.kept_tokens - self._visible_past()
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        self.cumulative_length += key_states.shape[-2]
        if keys.shape[-2] > self.kept_limit:  # copy, so the dropped part's memory is freed
            self.keys, self.values = keys[..., -self.kept_limit :, :].clone(), values[..., -self.kept_limit :, :].clone()
        else:
            self.keys, self.values = keys, values
        return keys[..., skip:, :], values[..., skip:, :]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        visible = self._visible_past()
        return visible + query_length, self.cumulative_length - visible

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def get_max_length(self) -> int:
        return self.sliding_window

    def can_remove(self, tokens: int) -> bool:
        """Whether removing the last `tokens` tokens leaves everything the next step needs."""
        left = self.cumulative_length - tokens
        return 0 <= tokens <= self.kept_tokens and self.kept_tokens - tokens >= min(left, self.sliding_window - 1)

    def crop(self, tokens_to_remove: int) -> None:
        """Remove the last `-tokens_to_remove` tokens (a negative count, as `DynamicLayer.crop` takes)."""
        if tokens_to_remove > 0:
            raise ValueError("pass a negative number of tokens to remove")
        tokens = -tokens_to_remove
        if tokens == 0 or not self.is_initialized:
            return
        if not self.can_remove(tokens):
            raise CacheRollbackError(
                f"a sliding-window layer keeps only its last {self.kept_tokens} of {self.cumulative_length} tokens and "
                f"cannot go back {tokens}; replay the session from its history"
            )
        self.keys, self.values = self.keys[..., :-tokens, :], self.values[..., :-tokens, :]
        self.cumulative_length -= tokens


def session_cache(config, margin_tokens: int = ROLLBACK_MARGIN_TOKENS) -> DynamicCache:
    """`DynamicCache(config=config)` with every sliding-window layer replaced by a `RollbackSlidingWindowLayer`."""
    cache = DynamicCache(config=config)
    cache.layers = [
        RollbackSlidingWindowLayer(layer.sliding_window, margin_tokens) if isinstance(layer, DynamicSlidingWindowLayer) else layer
        for layer in cache.layers
    ]
    return cache


def rollback(cache: DynamicCache, start: int, end: int, position: int) -> None:
    """Cut layers [start, end) of `cache` back to `position` tokens; all or nothing."""
    layers = cache.layers[start:end]
    length = layers[0].get_seq_length() if layers else 0
    if not 0 <= position <= length:
        raise CacheRollbackError(f"cannot roll back to position {position}: the cache holds {length} tokens")
    tokens = length - position
    if tokens == 0:
        return
    for index, layer in enumerate(layers, start):
        if isinstance(layer, RollbackSlidingWindowLayer) and not layer.can_remove(tokens):
            raise CacheRollbackError(
                f"block {index} keeps only the last {layer.kept_tokens} of {length} tokens (a sliding window of "
                f"{layer.sliding_window} plus {layer.margin_tokens} to roll back into) and cannot go back to position "
                f"{position}; replay the session from its history"
            )
        if isinstance(layer, DynamicSlidingWindowLayer) and layer.get_seq_length() >= layer.sliding_window:
            raise CacheRollbackError(f"block {index}'s cache is a plain sliding window that cannot roll back; "
                                     "make the cache with BlockStack.new_cache()")
    for layer in layers:
        layer.crop(-tokens)


def kept_tokens(cache: DynamicCache, start: int, end: int) -> dict[int, int]:
    """Tokens each of layers [start, end) holds now (a sliding layer holds at most window - 1 + margin)."""
    return {i: (0 if not layer.is_initialized or layer.keys is None or layer.keys.numel() == 0 else layer.keys.shape[-2])
            for i, layer in enumerate(cache.layers[start:end], start)}
