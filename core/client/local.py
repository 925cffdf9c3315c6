"""The whole model in this process: the reference that users and tests compare the swarm with
(`potluck generate --local`). It builds the same blocks a server would (same loader, dtype and precision) and
runs them with the same session cache, so its tokens are what an exact swarm must produce.

    model = LocalModelForCausalLM.from_pretrained("path/or/model.gguf", dtype="auto", quant="int8")
    print(model.generate(messages=[{"role": "user", "content": "Hi!"}], max_new_tokens=20).text)
"""

from __future__ import annotations

import asyncio

import torch

from potluck.core.client.causal_lm import CausalLM
from potluck.core.client.speculative import DraftModel
from potluck.core.model.loading import load_blocks, load_client_parts, open_model, resolve_dtype
from potluck.core.model.tokenizer import load_tokenizer
from potluck.core.protocol import RouteHop

LOCAL_PEER = "local"  # the route's peer id for this process


class LocalSession:
    """A session over blocks held in this process: one cache, absolute positions, like a server's session."""

    def __init__(self, stack, max_length: int):
        self.stack, self.max_length = stack, max_length
        self.cache = None
        self.position = 0
        self.failovers: list = []

    async def open(self) -> None:
        self.cache = self.stack.new_cache()

    async def step(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.position + hidden.shape[1] > self.max_length:
            raise ValueError(f"the session was opened for {self.max_length} tokens")
        param = next(self.stack.parameters())
        with torch.inference_mode():
            out = self.stack(hidden.to(device=param.device, dtype=param.dtype), self.cache)
        self.position += hidden.shape[1]
        return out.to(device="cpu", dtype=hidden.dtype)

    def rollback_to(self, position: int) -> None:
        if not 0 <= position <= self.position:
            raise ValueError(f"cannot roll back to {position}: the session holds {self.position} tokens")
        self.stack.rollback(self.cache, position)
        self.position = position

    async def close(self) -> None:
        self.cache = None

    def route_hops(self) -> tuple[RouteHop, ...]:
        return (RouteHop(peer_id=LOCAL_PEER, name="this PC", start_block=self.stack.start, end_block=self.stack.end),)


class LocalModelForCausalLM(CausalLM):
    def __init__(self, spec, parts, tokenizer, stack, *, precision_name: str):
        super().__init__(spec, parts, tokenizer)
        self.stack, self.precision_name = stack, precision_name

    @classmethod
    def from_pretrained(cls, model: str, *, revision: str | None = None, dtype: str = "auto", quant: str = "none",
                        device: str = "cpu") -> "LocalModelForCausalLM":
        """Open `model` and load every block, at `dtype` ("auto": the checkpoint's own) and precision `quant`."""
        spec = open_model(model, revision)
        torch_dtype = resolve_dtype(spec, dtype, device)
        stack = load_blocks(spec, 0, spec.num_blocks, torch_dtype, device, quant=quant)
        parts = load_client_parts(spec, torch.float32)
        return cls(spec, parts, load_tokenizer(spec.checkpoint), stack, precision_name=stack.compute)

    @property
    def compute(self) -> str:
        return self.precision_name

    def new_session(self, max_length: int, private: bool = False) -> LocalSession:
        return LocalSession(self.stack, max_length)  # every block runs here: a chat is always private

    def run(self, coro, timeout_seconds: float | None):
        return asyncio.run(coro)


def load_draft_model(model: str, *, dtype: str = "auto", quant: str = "none") -> DraftModel:
    """A small local model for speculative decoding; it must share the big model's tokenizer."""
    local = LocalModelForCausalLM.from_pretrained(model, dtype=dtype, quant=quant)
    return DraftModel(local.stack, local.parts)
