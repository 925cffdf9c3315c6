"""Server-side inference sessions: a KV cache per session under a token budget, and exact step execution.

A step names the absolute position of its first token. A step at the cache's length extends the sequence; a
step at an earlier position first rolls the cache (and the output history) back to it, so a client can retry or
replay a step after a fail-over without the servers double-counting tokens. A step beyond the cache's length
is refused: it would leave a hole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from potluck.core.model.families import BlockStack, CacheRollbackError
from potluck.core.wire.control import ErrorCode, NextHop


class SessionError(ValueError):
    """A session request or step that the server refuses; the message is sent back to the client with `code`."""

    code = ErrorCode.REFUSED


class CacheFullError(SessionError):
    """Opening this session would pass the server's attention-cache budget."""

    code = ErrorCode.CACHE_FULL


class CacheBudget:
    """Attention-cache tokens (per block) that sessions may reserve in total."""

    def __init__(self, total_tokens: int):
        if total_tokens < 1:
            raise ValueError("the cache budget must allow at least one token")
        self.total_tokens = total_tokens
        self._reserved: dict[str, int] = {}

    @property
    def used_tokens(self) -> int:
        return sum(self._reserved.values())

    @property
    def left_tokens(self) -> int:
        return self.total_tokens - self.used_tokens

    def reserve(self, session_id: str, tokens: int) -> None:
        if session_id in self._reserved:
            raise SessionError(f"session {session_id} is already open")
        if tokens > self.left_tokens:
            raise CacheFullError(
                f"this server's attention cache is full: {self.used_tokens} of {self.total_tokens} tokens are in "
                f"use and the session asks for {tokens}; try another server or a shorter max_length"
            )
        self._reserved[session_id] = tokens

    def release(self, session_id: str) -> None:
        self._reserved.pop(session_id, None)


@dataclass
class ServerSession:
    session_id: str
    client_peer: str
    stack: BlockStack  # the blocks this session runs (possibly part of the server's range)
    max_length: int
    next_hop: NextHop | None = None
    prev_peer: str | None = None  # the only peer allowed to push into this session
    cache: object = None
    history: list[torch.Tensor] = field(default_factory=list)  # output chunks, in order, for fail-over replay

    def __post_init__(self) -> None:
        if self.cache is None:
            self.cache = self.stack.new_cache()  # sliding-window layers keep their window plus a rollback margin

    @property
    def position(self) -> int:
        return self.stack.cached_length(self.cache)

    def run_step(self, position: int, hidden: torch.Tensor) -> torch.Tensor:
        """Run the session's blocks on `hidden` placed at `position`; returns the outputs."""
        length = self.position
        n_tokens = hidden.shape[1]
        if position > length:
            raise SessionError(f"step at position {position} would skip tokens: the cache holds {length}")
        if position + n_tokens > self.max_length:
            raise SessionError(f"step would reach {position + n_tokens} tokens, past the session's max_length {self.max_length}")
        if position < length:
            try:
                self.stack.rollback(self.cache, position)
            except CacheRollbackError as e:  # a sliding window no longer holds those tokens: the client replays
                raise SessionError(str(e)) from e
            self._crop_history(position)
        param = next(self.stack.parameters())
        with torch.inference_mode():
            out = self.stack(hidden.to(device=param.device, dtype=param.dtype), self.cache)
        out = out.to(device="cpu", dtype=hidden.dtype)
        self.history.append(out)
        return out

    def history_upto(self, position: int) -> torch.Tensor:
        """Outputs for positions [0, position), for a replacement of the next server to replay."""
        if position > self.position:
            raise SessionError(f"history up to {position} asked, but only {self.position} tokens were processed")
        if not self.history:
            return torch.empty(1, 0, self.stack.config.hidden_size)
        return torch.cat(self.history, dim=1)[:, :position]

    def _crop_history(self, position: int) -> None:
        kept, total = [], 0
        for chunk in self.history:
            if total + chunk.shape[1] <= position:
                kept.append(chunk)
            elif total < position:
                kept.append(chunk[:, : position - total])
            total += chunk.shape[1]
        self.history = kept
