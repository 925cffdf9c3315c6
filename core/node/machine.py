"""What the serving rules ask of this PC: how long since the last keyboard or mouse input, and whether it runs on
battery. Each answer is None when the PC cannot tell (no desktop session, no battery): that rule then does not apply.

Input idle time comes from the desktop session the node was started in: X11 through the XScreenSaver extension
(libXss, the way `xprintidle` asks), Windows through GetLastInputInfo, macOS through IOKit's HIDIdleTime (`ioreg`).
Wayland sessions offer no general way to ask, so there the idle rule does not apply. Battery: Linux's
/sys/class/power_supply, Windows' GetSystemPowerStatus, macOS's `pmset -g batt`. The parsers are pure and
table-tested; the probes run under Xvfb in tests/node/test_machine.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

POWER_SUPPLY_DIR = Path("/sys/class/power_supply")


# ---------------------------------------------------------------------------------------------- idle


class _XScreenSaverInfo(ctypes.Structure):
    _fields_ = [("window", ctypes.c_ulong), ("state", ctypes.c_int), ("kind", ctypes.c_int),
                ("til_or_since", ctypes.c_ulong), ("idle", ctypes.c_ulong), ("eventMask", ctypes.c_ulong)]


class X11Idle:
    """Idle time of the X display `display` (":0"), through libXss. The display stays open while this lives."""

    def __init__(self, display: str):
        x11_name, xss_name = ctypes.util.find_library("X11"), ctypes.util.find_library("Xss")
        if not x11_name or not xss_name:
            raise OSError("libX11 or libXss is not installed")
        self._x11, self._xss = ctypes.CDLL(x11_name), ctypes.CDLL(xss_name)
        self._x11.XOpenDisplay.restype = ctypes.c_void_p
        self._x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        self._x11.XDefaultRootWindow.restype = ctypes.c_ulong
        self._x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        self._x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self._x11.XFree.argtypes = [ctypes.c_void_p]
        self._xss.XScreenSaverAllocInfo.restype = ctypes.POINTER(_XScreenSaverInfo)
        self._xss.XScreenSaverQueryExtension.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                                                          ctypes.POINTER(ctypes.c_int)]
        self._xss.XScreenSaverQueryInfo.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(_XScreenSaverInfo)]
        self._display = self._x11.XOpenDisplay(display.encode())
        if not self._display:
            raise OSError(f"cannot open the X display {display}")
        event, error = ctypes.c_int(), ctypes.c_int()
        if not self._xss.XScreenSaverQueryExtension(self._display, ctypes.byref(event), ctypes.byref(error)):
            self.close()
            raise OSError(f"the X display {display} has no MIT-SCREEN-SAVER extension")
        self._info = self._xss.XScreenSaverAllocInfo()

    def seconds(self) -> float:
        root = self._x11.XDefaultRootWindow(self._display)
        if not self._xss.XScreenSaverQueryInfo(self._display, root, self._info):
            raise OSError("XScreenSaverQueryInfo failed")
        return self._info.contents.idle / 1000.0

    def close(self) -> None:
        if self._display:
            if getattr(self, "_info", None):
                self._x11.XFree(self._info)
                self._info = None
            self._x11.XCloseDisplay(self._display)
            self._display = None


def _windows_idle_seconds() -> float:
    class LASTINPUTINFO(ctypes.Structure):
        _fields_ = [("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint)]

    info = LASTINPUTINFO(ctypes.sizeof(LASTINPUTINFO), 0)
    if not ctypes.windll.user32.GetLastInputInfo(ctypes.byref(info)):  # type: ignore[attr-defined]
        raise OSError("GetLastInputInfo failed")
    now_ms = ctypes.windll.kernel32.GetTickCount() & 0xFFFFFFFF  # type: ignore[attr-defined]
    return ((now_ms - info.dwTime) & 0xFFFFFFFF) / 1000.0


def parse_ioreg_idle_seconds(text: str) -> float | None:
    """HIDIdleTime (nanoseconds) from `ioreg -c IOHIDSystem -d 4` output, in seconds."""
    match = re.search(r'"HIDIdleTime"\s*=\s*(\d+)', text)
    return int(match.group(1)) / 1e9 if match else None


class IdleProbe:
    """Seconds since the last keyboard or mouse input in this desktop session, or None when it cannot tell.

    A probe that fails once says why in the log and then answers None (the idle rule does not apply)."""

    def __init__(self, environ: Mapping[str, str] = os.environ, platform: str = sys.platform):
        self._environ, self._platform = environ, platform
        self._x11: X11Idle | None = None
        self.why_not = ""  # why the last answer was None

    def seconds(self) -> float | None:
        try:
            if self._platform.startswith("win"):
                return _windows_idle_seconds()
            if self._platform == "darwin":
                out = subprocess.run(["ioreg", "-c", "IOHIDSystem", "-d", "4"], capture_output=True, text=True,
                                     timeout=5).stdout
                return parse_ioreg_idle_seconds(out)
            display = self._environ.get("DISPLAY", "")
            if not display:
                return self._cannot("no X display in this session (Wayland or no desktop)")
            if self._x11 is None:
                self._x11 = X11Idle(display)
            return self._x11.seconds()
        except (OSError, AttributeError, subprocess.SubprocessError) as exc:
            self.close()
            return self._cannot(str(exc))

    def _cannot(self, why: str) -> None:
        if why != self.why_not:
            log.info("cannot tell how long this PC has been idle: %s; the idle rule does not apply", why)
        self.why_not = why
        return None

    def close(self) -> None:
        if self._x11 is not None:
            self._x11.close()
            self._x11 = None


# ---------------------------------------------------------------------------------------------- battery


def battery_from_supplies(supplies: Sequence[Mapping[str, str]]) -> bool | None:
    """On battery? From Linux power supplies ({"type", "online", "status", "scope"} as sysfs writes them).

    Mains (or USB-C) online: no. A system battery discharging with no mains online: yes. No system battery
    (a desktop; a mouse's battery has scope "Device"): None."""
    batteries = [s for s in supplies if s.get("type") == "Battery" and s.get("scope", "System") != "Device"]
    if not batteries:
        return None
    if any(s.get("type") in ("Mains", "USB", "USB_C", "USB_PD") and s.get("online") == "1" for s in supplies):
        return False
    return any(s.get("status") == "Discharging" for s in batteries)


def read_power_supplies(folder: Path = POWER_SUPPLY_DIR) -> list[dict[str, str]]:
    supplies = []
    for entry in sorted(folder.glob("*")) if folder.is_dir() else ():
        values = {}
        for name in ("type", "online", "status", "scope"):
            try:
                values[name] = (entry / name).read_text().strip()
            except OSError:
                pass
        supplies.append(values)
    return supplies


def parse_pmset_on_battery(text: str) -> bool | None:
    """`pmset -g batt`: "Now drawing from 'Battery Power'" or "'AC Power'"."""
    if "'Battery Power'" in text:
        return True
    if "'AC Power'" in text:
        return False if "InternalBattery" in text else None
    return None


def on_battery(platform: str = sys.platform, folder: Path = POWER_SUPPLY_DIR) -> bool | None:
    """Whether this PC runs on battery now; None when it has none or cannot tell."""
    try:
        if platform.startswith("win"):
            class SYSTEM_POWER_STATUS(ctypes.Structure):
                _fields_ = [("ACLineStatus", ctypes.c_ubyte), ("BatteryFlag", ctypes.c_ubyte),
                            ("BatteryLifePercent", ctypes.c_ubyte), ("SystemStatusFlag", ctypes.c_ubyte),
                            ("BatteryLifeTime", ctypes.c_ulong), ("BatteryFullLifeTime", ctypes.c_ulong)]

            status = SYSTEM_POWER_STATUS()
            if not ctypes.windll.kernel32.GetSystemPowerStatus(ctypes.byref(status)):  # type: ignore[attr-defined]
                return None
            no_battery = status.BatteryFlag & 128 or status.BatteryFlag == 255
            return None if no_battery else status.ACLineStatus == 0
        if platform == "darwin":
            out = subprocess.run(["pmset", "-g", "batt"], capture_output=True, text=True, timeout=5).stdout
            return parse_pmset_on_battery(out)
        return battery_from_supplies(read_power_supplies(folder))
    except (OSError, AttributeError, subprocess.SubprocessError):
        return None
