"""Progress of opening a model: the bytes of each file downloaded from the hub, and blocks built.

Whoever loads a model (the node, `potluck serve`) wraps the work in `reporting(listener)`; hub downloads made
inside it (core/model/checkpoint.py passes `download_bar()` to huggingface_hub as its progress bar class) call
`listener(DownloadStep(...))` as bytes arrive. The listener travels in a context variable, so it follows the work
into `asyncio.to_thread` and never reaches another caller's downloads. Light: tqdm is imported only when a
download bar is made.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

BAR_WIDTH = 30


@dataclass(frozen=True)
class DownloadStep:
    """One file's download so far."""

    name: str  # the file ("model-00002-of-00004.safetensors")
    done_bytes: int
    total_bytes: int  # 0 when the hub does not say


Listener = Callable[[DownloadStep], None]
_LISTENER: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("potluck_download_listener", default=None)


@contextlib.contextmanager
def reporting(listener: Listener) -> Iterator[None]:
    """Downloads made inside this block (in this context) report to `listener`."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def download_bar():
    """A tqdm class for huggingface_hub's `tqdm_class` that reports to the current listener (None without one)."""
    listener = _LISTENER.get()
    if listener is None:
        return None
    from tqdm.std import tqdm

    class ReportingBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs.update(disable=False, file=io.StringIO(), mininterval=0.0)  # counted, never printed
            super().__init__(*args, **kwargs)
            self._name = str(kwargs.get("desc") or "").rsplit("/", 1)[-1]  # the hub shortens it: "(…)ve/main/x"
            self._report()

        def update(self, n=1):
            shown = super().update(n)
            self._report()
            return shown

        def _report(self) -> None:
            total = int(self.total or 0)
            listener(DownloadStep(self._name, min(int(self.n), total) if total else int(self.n), total))

    return ReportingBar


def terminal_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """'[#########.....................]  31%' for a terminal line."""
    fraction = min(1.0, max(0.0, fraction))
    filled = int(round(fraction * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%"
