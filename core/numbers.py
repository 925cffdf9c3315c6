"""Numbers for people and checks of numbers from callers. Standard library only (the GUI uses it too).

One unit system for sizes everywhere a user sees one: binary units (KiB, MiB, GiB), as memory is measured.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3


def format_bytes(num_bytes: float) -> str:
    """About two significant digits: '7.8 GiB', '0.41 GiB', '12.0 MiB', '512 bytes'."""
    size = abs(num_bytes)
    sign = "-" if num_bytes < 0 else ""
    if size >= 100 * GIB:
        return f"{sign}{size / GIB:.0f} GiB"
    if size >= GIB:
        return f"{sign}{size / GIB:.1f} GiB"
    if size >= 100 * MIB:
        return f"{sign}{size / GIB:.2f} GiB"
    if size >= MIB:
        return f"{sign}{size / MIB:.1f} MiB"
    if size >= KIB:
        return f"{sign}{size / KIB:.1f} KiB"
    return f"{sign}{int(size)} bytes"


def require_int(name: str, value: object, *, minimum: int) -> None:
    """Raise ValueError unless `value` is an int (not a bool) of at least `minimum`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
