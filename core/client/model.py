"""The distributed model: the familiar `from_pretrained(...)` / `generate(...)` over a Potluck swarm.

    model = DistributedModelForCausalLM.from_pretrained("org/model", initial_peers=[...])
    result = model.generate(prompt="Hello", max_new_tokens=20)        # greedy
    result = model.generate(prompt="Hello", do_sample=True, temperature=0.8, top_p=0.9, seed=1)
    print(result.text, result.token_ids, result.route)       # route: which PC ran which blocks
    result = model.generate(messages=[...], private=True)     # the first and last blocks on this PC

The client runs the embeddings, final norm and LM head itself; servers run the blocks. Network work happens on
one background event loop; `generate` blocks the caller and streams tokens to `on_token` as they come.
A few percent of the steps are spot-checked on other servers (`spot_check_rate`, core/client/checker.py);
servers caught computing wrong are avoided, and remembered in this PC's file of suspects.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import torch

from potluck.core.client.causal_lm import CausalLM
from potluck.core.client.checker import SpotChecker
from potluck.core.client.generation import GenerationRequest, GenerationResult
from potluck.core.client.inference import InferenceSession
from potluck.core.client.loop_thread import LoopThread
from potluck.core.client.private import PrivateBlocks, PrivateModeError, PrivateSession
from potluck.core.client.spot_checks import DEFAULT_RATE, SpotCheckPolicy
from potluck.core.client.suspects import SuspectList, suspects_path
from potluck.core.client.swarm_view import SwarmError, SwarmView
from potluck.core.model.loading import load_client_parts, open_model, parse_dtype
from potluck.core.model.quant.format import parse_precision
from potluck.core.model.tokenizer import load_tokenizer
from potluck.core.swarm import dht as swarm_dht


class DistributedModelForCausalLM(CausalLM):
    def __init__(self, spec, parts, tokenizer, dht, swarm: SwarmView, loop: LoopThread, *, dtype: torch.dtype,
                 push: bool, timeout: float, max_retries: int, owns_dht: bool):
        super().__init__(spec, parts, tokenizer)
        self.dht, self.swarm, self.loop = dht, swarm, loop
        self.wire_dtype, self.push, self.timeout, self.max_retries = dtype, push, timeout, max_retries
        self._owns_dht = owns_dht
        self.spot_checks = SpotCheckPolicy()  # how often steps are checked (rate 0: never)
        self.private_blocks = 1  # blocks a private chat keeps on this PC at each end
        self._private: PrivateBlocks | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.wire_dtype

    @classmethod
    def from_pretrained(cls, model: str, initial_peers: Sequence[str] = (), *, revision: str | None = None, dht=None,
                        dtype: str = "float32", push: bool = True, timeout: float = 20.0, max_retries: int = 3,
                        self_peer_id: str | None = None, quant: str | None = None,
                        spot_check_rate: float = DEFAULT_RATE, private_blocks: int = 1,
                        remember_suspects: bool = True) -> "DistributedModelForCausalLM":
        """Open `model` (a folder, a .gguf file or a hub id), load only its client-side parts, and join the swarm.
        `quant` (none, int8, int4) picks the servers' weight precision; by default the one the servers announce
        (the first route decides; fail-overs then stay at the same precision). `spot_check_rate`: the fraction of
        steps recomputed by other servers and compared (0: none). `private_blocks`: how many blocks at each end a
        private chat runs on this PC. `remember_suspects`: read and add to this PC's file of suspects (else they
        are kept in memory only)."""
        if quant is not None:
            quant = parse_precision(quant).value
        checks = SpotCheckPolicy(spot_check_rate)
        if isinstance(private_blocks, bool) or not isinstance(private_blocks, int) or private_blocks < 1:
            raise PrivateModeError(f"private_blocks must be a whole number >= 1, got {private_blocks!r}")
        wire_dtype = parse_dtype(dtype)
        if dht is None and not initial_peers:
            raise ValueError("initial_peers is empty: give the multiaddr of at least one server of the swarm")
        with ThreadPoolExecutor(2, thread_name_prefix="potluck-open") as pool:
            # the model's client-side parts and its tokenizer load while the DHT starts (on this thread: a DHT's
            # child process dies with the thread that started it, and this one lives on)
            opened = pool.submit(_open_client_side, model, revision, pool)
            owns_dht = dht is None
            if owns_dht:
                try:
                    dht = swarm_dht.start_dht(swarm_dht.DHTOptions(initial_peers=tuple(initial_peers), client_mode=True))
                except BaseException:
                    opened.cancel()
                    raise
            try:
                spec, parts, tokenizer = opened.result()
            except BaseException:
                if owns_dht:
                    dht.shutdown()
                raise
        loop = LoopThread()
        try:
            p2p = loop.run(dht.replicate_p2p(), timeout=30)
        except BaseException:
            loop.stop()
            if owns_dht:
                dht.shutdown()
            raise
        suspects = SuspectList(suspects_path() if remember_suspects else None)
        swarm = SwarmView(dht, p2p, spec.uid, spec.num_blocks, self_peer_id=self_peer_id, precision=quant,
                          suspects=suspects)
        model = cls(spec, parts, tokenizer, dht, swarm, loop, dtype=wire_dtype, push=push, timeout=timeout,
                    max_retries=max_retries, owns_dht=owns_dht)
        model.spot_checks, model.private_blocks = checks, private_blocks
        return model

    @property
    def compute(self) -> str:
        return self.swarm.compute or ""

    def new_session(self, max_length: int, private: bool = False) -> InferenceSession | PrivateSession:
        """A session through the swarm; `private`: the first and last `private_blocks` blocks run here."""
        checker = SpotChecker(self.spot_checks) if self.spot_checks.rate > 0 else None
        if not private:
            return InferenceSession(self.swarm, self.spec.hidden_size, max_length, push=self.push,
                                    timeout=self.timeout, max_retries=self.max_retries, checker=checker)
        if self._private is None or self._private.count != self.private_blocks:
            self._private = PrivateBlocks(self.spec, self.private_blocks)
        start, end = self._private.middle
        middle = InferenceSession(self.swarm, self.spec.hidden_size, max_length, push=self.push, timeout=self.timeout,
                                  max_retries=self.max_retries, start_block=start, end_block=end, checker=checker)
        return PrivateSession(self._private, middle)

    def run(self, coro, timeout_seconds: float | None):
        return self.loop.run(coro, timeout_seconds)

    def timeout_for(self, request: GenerationRequest) -> float:
        return self.timeout * (request.max_new_tokens + 4) * (self.max_retries + 1) + 60

    def shutdown(self) -> None:
        try:
            self.loop.run(self.swarm.p2p.shutdown(), timeout=5)  # a replica: closes our connection, not the daemon
        except Exception:  # already gone
            pass
        self.loop.stop()
        if self._owns_dht:
            self.dht.shutdown()


def _open_client_side(model: str, revision: str | None, pool: ThreadPoolExecutor):
    spec = open_model(model, revision)
    tokenizer = pool.submit(load_tokenizer, spec.checkpoint)  # beside the tensors (both mostly outside the GIL)
    return spec, load_client_parts(spec, torch.float32), tokenizer.result()


__all__ = ["DistributedModelForCausalLM", "GenerationResult", "SwarmError"]
