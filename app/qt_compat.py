"""Keep PySide6 6.12 usable on Python 3.11.

shiboken6/PySide6 6.12.0 return None from void methods, and True from `SignalInstance.emit()`, without taking a
reference: harmless on Python 3.12+, where those singletons are immortal, but on 3.11 every call drops one reference,
and after a few thousand calls CPython aborts ("Fatal Python error: none_dealloc: deallocating None"). 6.11.3 does
not do this. Packaging should pin a good combination; `protect_singletons()` keeps a bad one from crashing.
"""

from __future__ import annotations

import ctypes
import sys

_PROBE_CALLS = 64
_IMMORTAL_REFS = 1 << 40  # far more references than a process can ever drop


def pyside_drops_none_refs() -> bool:
    """Probe: does a PySide6 void method lose a reference to None?"""
    from PySide6.QtCore import QObject

    probe = QObject()
    probe.setObjectName("probe")
    before = sys.getrefcount(None)
    for _ in range(_PROBE_CALLS):
        probe.setObjectName("probe")
    return before - sys.getrefcount(None) >= _PROBE_CALLS // 2


def protect_singletons() -> bool:
    """Where PySide6 drops references to None/True/False (Python < 3.12 only), give those singletons so many
    references that they can never reach zero, as Python 3.12 does. Returns True when it had to."""
    if sys.version_info >= (3, 12):
        return False
    if sys.getrefcount(None) > _IMMORTAL_REFS // 2:
        return True  # already done
    if not pyside_drops_none_refs():
        return False
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += _IMMORTAL_REFS
    return True
