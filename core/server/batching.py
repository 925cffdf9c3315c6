"""Cross-session batching: decode steps of sessions that arrive together share one read of the weights.

A CPU decode step is bound by reading the weights, so four sessions' steps cost about what one costs if their
matrix products run together. Each session keeps its own cache, positions and masks: the sessions' steps run their
blocks side by side (one greenlet each, in one thread), and only the linear layers meet. `BatchedLinear` wraps
every linear layer of a stack; in a batch, each step parks at a linear layer until every step has reached it, the
layer computes all their rows in one product, and each step takes back its own rows.
Outside a batch the wrapper is a plain call. Attention, norms and experts run per session, exactly as alone; a
linear layer's rows are computed together, which on the quantized kernels gives identical bits (their rows are
independent) and in float32 the same up to the product's rounding (about 1e-6).

`StepBatcher` decides what runs together: single-token steps on the same blocks that arrive within
`window_seconds` of each other (or as soon as every open session has a step waiting). Longer steps (prefill
chunks) run alone, between batches, so a long prompt does not freeze the others for more than one chunk.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import greenlet
import torch
from torch import nn

from potluck.core.model.quant.modules import QuantizedLinear

BATCH_WINDOW_SECONDS = 0.002  # how long the first step of a batch waits for others
MAX_BATCH_SESSIONS = 8


class _Park:
    """What a session's greenlet hands the scheduler at a linear layer: the layer and its input rows."""

    __slots__ = ("layer", "x")

    def __init__(self, layer: "BatchedLinear", x: torch.Tensor):
        self.layer, self.x = layer, x


_workers: dict = {}  # greenlet -> its batch's scheduler greenlet, for the greenlets running sessions' steps


def run_together(runs: list) -> list:
    """Run the steps `runs` (callables) side by side in one thread, each in its own greenlet; at every linear layer
    they park, and the layer computes all parked rows in one product. Returns each step's result or exception.

    Greenlets, not threads: a switch costs about a microsecond and keeps torch on this thread's full thread pool,
    where thread hand-offs at ~60 linear layers a step cost milliseconds. Steps that park at different layers
    (they should not: the same blocks run the same layers) are computed layer by layer, so nothing can wait
    forever."""
    scheduler = greenlet.getcurrent()
    outcomes: list = [None] * len(runs)
    parked: dict[int, _Park] = {}
    workers = []
    for run in runs:
        worker = greenlet.greenlet(lambda run=run: _guarded(run))
        _workers[worker] = scheduler
        workers.append(worker)
    try:
        with torch.inference_mode():  # one outer mode: the steps' own guards nest inside it, in any order
            sends = {i: _START for i in range(len(runs))}
            while sends:
                for i, value in list(sends.items()):
                    got = workers[i].switch() if value is _START else workers[i].switch(value)
                    if isinstance(got, _Park):
                        parked[i] = got
                    else:
                        outcomes[i] = got
                sends = {}
                if parked:
                    layer = next(iter(parked.values())).layer
                    group = sorted(i for i, p in parked.items() if p.layer is layer)
                    rows = [parked[i].x.reshape(-1, parked[i].x.shape[-1]) for i in group]
                    try:
                        out = layer.inner(torch.cat(rows))
                    except BaseException as e:  # the layer failed: each of its callers gets the error
                        out = e
                    start = 0
                    for i, r in zip(group, rows):
                        x = parked.pop(i).x
                        if isinstance(out, BaseException):
                            sends[i] = _Raise(out)
                        else:
                            sends[i] = out[start : start + r.shape[0]].reshape(*x.shape[:-1], -1)
                        start += r.shape[0]
    finally:
        for worker in workers:
            _workers.pop(worker, None)
    return outcomes


_START = object()  # the first switch into a step's greenlet starts it (with no value)


class _Raise:
    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


def _guarded(run):
    try:
        return run()
    except BaseException as e:  # handed to the scheduler as this step's outcome
        return _Failed(e)


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


class BatchedLinear(nn.Module):
    """A linear layer (nn.Linear or a quantized one) whose calls meet the other sessions' when in a batch."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scheduler = _workers.get(greenlet.getcurrent())
        if scheduler is None:
            return self.inner(x)
        got = scheduler.switch(_Park(self, x))
        if isinstance(got, _Raise):
            raise got.error
        return got


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
        self.batches_run += 1
        self.steps_batched += len(group)
        outcomes = await asyncio.to_thread(run_together, [w.run for w in group])
        for w, outcome in zip(group, outcomes):
            if isinstance(outcome, _Failed):
                w.future.set_exception(outcome.error)
            else:
                w.future.set_result(outcome)

    async def _settle(self, item: _Waiting, coro) -> None:
        try:
            item.future.set_result(await coro)
        except BaseException as e:  # the step's own error goes to its session
            item.future.set_exception(e)

    def shutdown(self) -> None:
        """Nothing to release: batches run on asyncio's worker threads."""
