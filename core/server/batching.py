"""Cross-session batching: decode steps of sessions that arrive together share one read of the weights.

A CPU decode step is bound by reading the weights, so four sessions' steps cost about what one costs if their
matrix products run together. Each session keeps its own cache, positions and masks: the sessions' steps run their
blocks side by side (one worker thread each), and only the linear layers meet. `BatchedLinear` wraps every linear
layer of a stack; while a batch is running, each participant's call waits at that layer's rendezvous until every
participant has arrived, the last one computes all their rows in one product, and each takes back its own rows.
Outside a batch the wrapper is a plain call. Attention, norms and experts run per session, exactly as alone; a
linear layer's rows are computed together, which on the quantized kernels gives identical bits (their rows are
independent) and in float32 the same up to the product's rounding (about 1e-6).

`StepBatcher` decides what runs together: single-token steps on the same blocks that arrive within
`window_seconds` of each other (or as soon as every open session has a step waiting). Longer steps (prefill
chunks) run alone, between batches, so a long prompt does not freeze the others for more than one chunk.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch import nn

from potluck.core.model.quant.modules import QuantizedLinear

BATCH_WINDOW_SECONDS = 0.002  # how long the first step of a batch waits for others
MAX_BATCH_SESSIONS = 8


class BatchAborted(RuntimeError):
    """Another participant of the batch failed; this step is retried alone."""


class _Batch:
    """The rendezvous of one batch: per linear layer, the rows of every participant."""

    def __init__(self, participants: int):
        self.participants = participants
        self.lock = threading.Condition()
        self.calls: dict[int, dict] = {}  # layer id -> {"inputs": {slot: x}, "outputs": None | list, "error": …}
        self.failed: BaseException | None = None

    def linear(self, layer: "BatchedLinear", slot: int, x: torch.Tensor) -> torch.Tensor:
        key = id(layer)
        with self.lock:
            call = self.calls.setdefault(key, {"inputs": {}, "outputs": None})
            call["inputs"][slot] = x
            if len(call["inputs"]) == self.participants:
                order = sorted(call["inputs"])
                rows = [call["inputs"][s].reshape(-1, x.shape[-1]) for s in order]
                try:
                    out = layer.inner(torch.cat(rows))
                except BaseException as e:  # everyone must leave the rendezvous
                    self.failed = e
                    self.lock.notify_all()
                    raise
                outputs, start = {}, 0
                for s, r in zip(order, rows):
                    outputs[s] = out[start : start + r.shape[0]]
                    start += r.shape[0]
                call["outputs"] = outputs
                del self.calls[key]  # the next call of this layer (the next step) is a new rendezvous
                self.lock.notify_all()
            else:
                while call["outputs"] is None and self.failed is None:
                    self.lock.wait()
                if self.failed is not None and call["outputs"] is None:
                    raise BatchAborted(f"another session of the batch failed: {self.failed}")
            return call["outputs"][slot].reshape(*x.shape[:-1], -1)

    def abort(self, error: BaseException) -> None:
        with self.lock:
            self.failed = self.failed or error
            self.lock.notify_all()


_current = threading.local()  # (batch, slot) of the step this thread runs, if it runs in a batch


class BatchedLinear(nn.Module):
    """A linear layer (nn.Linear or a quantized one) whose calls meet the other sessions' when in a batch."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = getattr(_current, "batch", None)
        if batch is None:
            return self.inner(x)
        return batch[0].linear(self, batch[1], x)


def make_batchable(module: nn.Module) -> int:
    """Wrap the linear layers inside `module` (quantized ones included) in place; returns how many. Layers inside
    mixture-of-experts modules stay as they are: each session calls the experts its router picks, so those calls
    cannot meet (the attention and the dense layers around them still do)."""
    targets = [(parent, name, child) for qualified, parent in module.named_modules()
               for name, child in parent.named_children()
               if isinstance(child, (nn.Linear, QuantizedLinear)) and not isinstance(parent, BatchedLinear)
               and "expert" not in f"{qualified}.{name}".lower()]
    for parent, name, child in targets:
        setattr(parent, name, BatchedLinear(child))
    return len(targets)


@dataclass
class _Waiting:
    run: object  # () -> torch.Tensor: the step, as the session would run it alone
    key: tuple  # steps with the same key may run together (same blocks, single token)
    future: asyncio.Future = field(default=None)


class StepBatcher:
    """Runs sessions' steps, batching single-token steps that arrive together (see the module doc)."""

    def __init__(self, *, window_seconds: float = BATCH_WINDOW_SECONDS, max_sessions: int = MAX_BATCH_SESSIONS,
                 open_sessions=lambda: 1):
        self.window_seconds, self.max_sessions, self.open_sessions = window_seconds, max_sessions, open_sessions
        self._pool = ThreadPoolExecutor(max_sessions, thread_name_prefix="potluck-step")
        self._waiting: list[_Waiting] = []
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self.batches_run = 0  # batches of two or more steps, for stats and tests
        self.steps_batched = 0

    async def run(self, run, key: tuple | None) -> torch.Tensor:
        """Run a step (`run()` computes it alone); `key` None: never batched. A lone session's step runs right
        here, on the event loop, as it would without batching (no thread hop, no window)."""
        if key is not None and not self._waiting and self.open_sessions() <= 1:
            return run()
        item = _Waiting(run, key, asyncio.get_running_loop().create_future())
        self._waiting.append(item)
        self._wakeup.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._serve())
        return await item.future

    async def _serve(self) -> None:
        while self._waiting:
            first = self._waiting[0]
            if first.key is not None:
                deadline = time.monotonic() + self.window_seconds
                while time.monotonic() < deadline and self._batchable(first.key) < min(self.max_sessions,
                                                                                       self.open_sessions()):
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), max(0.0, deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
            group = [w for w in self._waiting if first.key is not None and w.key == first.key][: self.max_sessions]
            group = group or [first]
            for w in group:
                self._waiting.remove(w)
            await self._execute(group)

    def _batchable(self, key: tuple) -> int:
        return sum(1 for w in self._waiting if w.key == key)

    async def _execute(self, group: list[_Waiting]) -> None:
        if len(group) == 1:
            await self._settle(group[0], asyncio.to_thread(group[0].run))
            return
        batch = _Batch(len(group))
        self.batches_run += 1
        self.steps_batched += len(group)

        def in_batch(slot: int, run):
            _current.batch = (batch, slot)
            try:
                return run()
            except BaseException as e:
                batch.abort(e)
                raise
            finally:
                _current.batch = None

        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(self._pool, in_batch, slot, w.run) for slot, w in enumerate(group)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for w, result in zip(group, results):
            if isinstance(result, BatchAborted):  # an innocent bystander of another session's failure: alone
                await self._settle(w, asyncio.to_thread(w.run))
            elif isinstance(result, BaseException):
                w.future.set_exception(result)
            else:
                w.future.set_result(result)

    async def _settle(self, item: _Waiting, coro) -> None:
        try:
            item.future.set_result(await coro)
        except BaseException as e:  # the step's own error goes to its session
            item.future.set_exception(e)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
