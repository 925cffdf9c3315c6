"""The distributed model: the familiar `from_pretrained(...)` / `generate(...)` over a Potluck swarm.

    model = DistributedModelForCausalLM.from_pretrained("org/model", initial_peers=[...])
    result = model.generate(prompt="Hello", max_new_tokens=20)        # greedy
    result = model.generate(prompt="Hello", do_sample=True, temperature=0.8, top_p=0.9, seed=1)
    print(result.text, result.token_ids, result.route)       # route: which PC ran which blocks

The client runs the embeddings, final norm and LM head itself; servers run the blocks. Network work happens on
one background event loop; `generate` blocks the caller and streams tokens to `on_token` as they come.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from potluck.core.client.inference import Failover, InferenceSession
from potluck.core.client.sampling import SamplingParams, TokenChooser
from potluck.core.client.swarm_view import SwarmError, SwarmView
from potluck.core.model.loading import ModelSpec, load_client_parts, open_model, parse_dtype
from potluck.core.protocol import RouteHop, StopReason
from potluck.core.swarm import dht as swarm_dht
from potluck.core.wire.tensors import max_chunk_tokens

_DEFAULT = object()


class LoopThread:
    """An asyncio event loop on a daemon thread; `run(coro)` waits for its result from any other thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="potluck-client-loop", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_rest():
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        if self.thread.is_alive():
            try:
                self.run(cancel_rest(), timeout=5)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(timeout=5)


@dataclass
class GenerationResult:
    token_ids: list[int]  # the new tokens only
    text: str  # the new text only
    stop_reason: StopReason  # LENGTH, EOS, STOP_SEQUENCE or CANCELLED
    route: tuple[RouteHop, ...]  # which server ran which blocks, in order
    prefill_seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)  # one per generated token after the first
    failovers: list[Failover] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        total = self.prefill_seconds + sum(self.step_seconds)
        return len(self.token_ids) / total if total > 0 else 0.0


class DistributedModelForCausalLM:
    def __init__(self, spec: ModelSpec, parts, tokenizer, dht, swarm: SwarmView, loop: LoopThread, *, dtype: torch.dtype,
                 push: bool, timeout: float, max_retries: int, owns_dht: bool):
        self.spec, self.parts, self.tokenizer, self.dht, self.swarm, self.loop = spec, parts, tokenizer, dht, swarm, loop
        self.dtype, self.push, self.timeout, self.max_retries, self._owns_dht = dtype, push, timeout, max_retries, owns_dht

    @classmethod
    def from_pretrained(cls, model: str, initial_peers: Sequence[str] = (), *, revision: str | None = None, dht=None,
                        dtype: str = "float32", push: bool = True, timeout: float = 20.0, max_retries: int = 3,
                        self_peer_id: str | None = None) -> "DistributedModelForCausalLM":
        """Open `model` (a folder or hub id), load only its client-side parts, and join the swarm."""
        spec = open_model(model, revision)
        torch_dtype = parse_dtype(dtype)
        parts = load_client_parts(spec, torch.float32)
        tokenizer = _load_tokenizer(spec)
        owns_dht = dht is None
        if owns_dht:
            if not initial_peers:
                raise ValueError("initial_peers is empty: give the multiaddr of at least one server of the swarm")
            dht = swarm_dht.start_dht(swarm_dht.DHTOptions(initial_peers=tuple(initial_peers), client_mode=True))
        loop = LoopThread()
        try:
            p2p = loop.run(dht.replicate_p2p(), timeout=30)
        except BaseException:
            loop.stop()
            if owns_dht:
                dht.shutdown()
            raise
        swarm = SwarmView(dht, p2p, spec.uid, spec.num_blocks, self_peer_id=self_peer_id)
        return cls(spec, parts, tokenizer, dht, swarm, loop, dtype=torch_dtype, push=push, timeout=timeout,
                   max_retries=max_retries, owns_dht=owns_dht)

    def encode(self, prompt: str | None = None, messages: list[dict] | None = None) -> list[int]:
        if messages is not None:
            if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
                prompt = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
            else:
                return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: pass token ids instead of text")
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def generate(self, input_ids: Sequence[int] | torch.Tensor | None = None, *, prompt: str | None = None,
                 messages: list[dict] | None = None, max_new_tokens: int = 32, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 seed: int | None = None, eos_token_id=_DEFAULT, stop_strings: Sequence[str] = (),
                 on_token: Callable[[int, str], None] | None = None, cancel: threading.Event | None = None) -> GenerationResult:
        """Generate up to `max_new_tokens` after the prompt (token ids, text, or chat messages)."""
        if input_ids is None:
            input_ids = self.encode(prompt, messages)
        ids = [int(i) for i in (input_ids.flatten().tolist() if isinstance(input_ids, torch.Tensor) else input_ids)]
        if not ids:
            raise ValueError("the prompt is empty")
        if any(not 0 <= i < self.spec.config.vocab_size for i in ids):
            raise ValueError(f"token ids must be in [0, {self.spec.config.vocab_size})")
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        params = SamplingParams(do_sample, temperature, top_k, top_p, repetition_penalty, seed)
        eos = self._eos_ids(eos_token_id)
        timeout = self.timeout * (max_new_tokens + 4) * (self.max_retries + 1) + 60
        return self.loop.run(self._generate(ids, max_new_tokens, params, eos, tuple(stop_strings), on_token, cancel), timeout)

    def _eos_ids(self, eos_token_id) -> set[int]:
        if eos_token_id is None:
            return set()
        if eos_token_id is _DEFAULT:
            eos_token_id = self.spec.config.eos_token_id
        if eos_token_id is None:
            return set()
        return {int(e) for e in (eos_token_id if isinstance(eos_token_id, (list, tuple, set)) else [eos_token_id])}

    async def _generate(self, ids, max_new_tokens, params, eos, stop_strings, on_token, cancel) -> GenerationResult:
        chooser = TokenChooser(params)
        session = InferenceSession(self.swarm, self.spec.hidden_size, len(ids) + max_new_tokens, push=self.push,
                                   timeout=self.timeout, max_retries=self.max_retries)
        new_ids: list[int] = []
        text, reason, step_seconds = "", StopReason.LENGTH, []
        await session.open()
        try:
            began = time.perf_counter()
            hidden = await self._prefill(session, ids)
            prefill_seconds = time.perf_counter() - began
            seen = torch.tensor(ids)
            while True:
                token = chooser.choose(self.parts.logits(hidden[:, -1:].float())[0, -1], seen)
                new_ids.append(token)
                seen = torch.cat([seen, torch.tensor([token])])
                new_text = self._decode(new_ids)
                if on_token is not None:
                    on_token(token, new_text[len(text):])
                text = new_text
                if token in eos:
                    reason = StopReason.EOS
                elif any(s and s in text for s in stop_strings):
                    reason, text = StopReason.STOP_SEQUENCE, _cut_at_stop(text, stop_strings)
                elif cancel is not None and cancel.is_set():
                    reason = StopReason.CANCELLED
                if reason is not StopReason.LENGTH or len(new_ids) >= max_new_tokens:
                    break
                began = time.perf_counter()
                embedded = self.parts.embed_ids(torch.tensor([[token]])).to(self.dtype)
                hidden = await session.step(embedded)
                step_seconds.append(time.perf_counter() - began)
            return GenerationResult(new_ids, text, reason, self._route(session), prefill_seconds, step_seconds, session.failovers)
        finally:
            await session.close()

    async def _prefill(self, session: InferenceSession, ids: list[int]) -> torch.Tensor:
        embedded = self.parts.embed_ids(torch.tensor([ids])).to(self.dtype)
        chunk = max_chunk_tokens(self.spec.hidden_size, self.dtype)
        hidden = None
        for start in range(0, embedded.shape[1], chunk):
            hidden = await session.step(embedded[:, start : start + chunk])
        return hidden

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True) if self.tokenizer is not None else ""

    @staticmethod
    def _route(session: InferenceSession) -> tuple[RouteHop, ...]:
        return tuple(RouteHop(peer_id=span.peer_id, name=record.name, start_block=span.start_block,
                              end_block=span.end_block) for span, record in session.route)

    def shutdown(self) -> None:
        try:
            self.loop.run(self.swarm.p2p.shutdown(), timeout=5)  # a replica: closes our connection, not the daemon
        except Exception:  # already gone
            pass
        self.loop.stop()
        if self._owns_dht:
            self.dht.shutdown()


def _cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    cuts = [text.index(s) for s in stop_strings if s and s in text]
    return text[: min(cuts)] if cuts else text


def _load_tokenizer(spec: ModelSpec):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(spec.checkpoint.model, revision=None if _is_local(spec) else spec.checkpoint.revision)
    except (OSError, ValueError):
        return None  # a model without a tokenizer still works with token ids


def _is_local(spec: ModelSpec) -> bool:
    import os

    return os.path.isdir(spec.checkpoint.model)


__all__ = ["DistributedModelForCausalLM", "GenerationResult", "SwarmError"]
