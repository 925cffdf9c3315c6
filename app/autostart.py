"""Start Potluck when the user logs in: an XDG autostart .desktop file on Linux, a LaunchAgents plist on macOS, a
value under the registry's Run key on Windows (through QSettings' native format).

The file contents are built by pure functions (tested apart); `Autostart` only writes and removes them.
"""

from __future__ import annotations

import plistlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QSettings

from potluck.app.paths import APP_ID, APP_NAME, linux_autostart_dir, macos_launch_agents_dir

WINDOWS_RUN_KEY = r"HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run"
MACOS_LABEL = "org.potluck.app"


def _desktop_exec_arg(arg: str) -> str:
    """Quote one argument for a .desktop Exec line (XDG rules: double quotes, escape \\ " ` $; % doubled)."""
    arg = arg.replace("%", "%%")
    if arg and all(c.isalnum() or c in "-_./=:,+@" for c in arg):
        return arg
    escaped = "".join("\\" + c if c in '\\"`$' else c for c in arg)
    return f'"{escaped}"'


def linux_desktop_entry(command: Sequence[str], working_dir: str | None = None) -> str:
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        f"Name={APP_NAME}",
        "Comment=Share this PC's part of the friends' language model",
        "Exec=" + " ".join(_desktop_exec_arg(a) for a in command),
        f"Icon={APP_ID}",
        "Terminal=false",
        "X-GNOME-Autostart-enabled=true",
    ]
    if working_dir:
        lines.append(f"Path={working_dir}")
    return "\n".join(lines) + "\n"


def macos_launch_agent(command: Sequence[str], working_dir: str | None = None) -> bytes:
    agent = {"Label": MACOS_LABEL, "ProgramArguments": list(command), "RunAtLoad": True, "ProcessType": "Interactive"}
    if working_dir:
        agent["WorkingDirectory"] = working_dir
    return plistlib.dumps(agent)


def windows_run_value(command: Sequence[str]) -> str:
    return subprocess.list2cmdline(list(command))


def gui_command(frozen: bool | None = None, executable: str | None = None) -> tuple[list[str], str | None]:
    """The command that opens the app, and the folder to run it in (a source checkout needs its root)."""
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    executable = executable or sys.executable
    if frozen:
        return [executable], None
    return [executable, "-m", "potluck.app.entry"], str(Path(__file__).resolve().parent.parent)


class Autostart:
    def __init__(
        self,
        command: Sequence[str],
        working_dir: str | None = None,
        platform: str = sys.platform,
        linux_dir: Callable[[], Path] = linux_autostart_dir,
        macos_dir: Callable[[], Path] = macos_launch_agents_dir,
        windows_settings: Callable[[], QSettings] = lambda: QSettings(WINDOWS_RUN_KEY, QSettings.Format.NativeFormat),
    ) -> None:
        self._command = list(command)
        self._working_dir = working_dir
        self._platform = platform
        self._linux_dir = linux_dir
        self._macos_dir = macos_dir
        self._windows_settings = windows_settings

    def _file(self) -> Path | None:
        if self._platform.startswith("linux") or self._platform.startswith("freebsd"):
            return self._linux_dir() / f"{APP_ID}.desktop"
        if self._platform == "darwin":
            return self._macos_dir() / f"{MACOS_LABEL}.plist"
        return None

    def is_enabled(self) -> bool:
        path = self._file()
        if path is not None:
            return path.is_file()
        return self._windows_settings().contains(APP_NAME)

    def set_enabled(self, enabled: bool) -> None:
        """Write or remove the entry. Raises OSError with the reason if the system refuses."""
        path = self._file()
        if path is None:
            settings = self._windows_settings()
            if enabled:
                settings.setValue(APP_NAME, windows_run_value(self._command))
            else:
                settings.remove(APP_NAME)
            settings.sync()
            if settings.status() != QSettings.Status.NoError:
                raise OSError("Windows refused to change the start-up entry")
            return
        if not enabled:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._platform == "darwin":
            path.write_bytes(macos_launch_agent(self._command, self._working_dir))
        else:
            path.write_text(linux_desktop_entry(self._command, self._working_dir), encoding="utf-8")

    def describe(self) -> str:
        path = self._file()
        return str(path) if path is not None else f"{WINDOWS_RUN_KEY}\\{APP_NAME}"

