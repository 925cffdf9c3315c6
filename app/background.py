"""Run a blocking call on Qt's thread pool and get its result back on the GUI thread, as a signal.

For short jobs only (creating an invite code); long work belongs to the node process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class _Carrier(QObject):
    succeeded = Signal(object)
    failed = Signal(object)


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any], carrier: _Carrier) -> None:
        super().__init__()
        self._fn = fn
        self._carrier = carrier

    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:  # reported to the caller's on_error, on the GUI thread
            self._carrier.failed.emit(exc)
        else:
            self._carrier.succeeded.emit(result)


_in_flight: set[_Carrier] = set()  # keeps each carrier alive until its result is delivered


def run_in_background(fn: Callable[[], Any], on_done: Callable[[Any], None], on_error: Callable[[Exception], None]) -> None:
    """Call fn() on a pool thread; then on_done(result) or on_error(exception) on the calling (GUI) thread."""
    carrier = _Carrier()  # created here, so it lives in the GUI thread and its signals are queued to it
    _in_flight.add(carrier)

    def finish(callback: Callable[[Any], None], value: Any) -> None:
        _in_flight.discard(carrier)
        if receiver_alive(callback):  # the window that asked may have closed while the job ran
            callback(value)

    carrier.succeeded.connect(lambda result: finish(on_done, result))
    carrier.failed.connect(lambda exc: finish(on_error, exc))
    QThreadPool.globalInstance().start(_Job(fn, carrier))


def receiver_alive(callback: Callable[..., Any]) -> bool:
    """False when callback is a method of a Qt object whose C++ side is already deleted."""
    owner = getattr(callback, "__self__", None)
    return not isinstance(owner, QObject) or shiboken6.isValid(owner)
