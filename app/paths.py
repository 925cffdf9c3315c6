"""Where the app keeps its files: core/paths.py's folders (which honour POTLUCK_HOME), plus what only the GUI needs
(its settings file, resources, autostart folders). Functions, not module globals: nothing is resolved at import time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from potluck.core.paths import APP_NAME, config_dir, logs_dir

APP_ID = "potluck"  # lower-case name for files, sockets and autostart entries

__all__ = ["APP_ID", "APP_NAME", "config_dir", "config_file", "default_log_dir", "resources_dir",
           "linux_autostart_dir", "macos_launch_agents_dir"]


def config_file() -> Path:
    """The app's settings (model, memory cap, ...), JSON; secrets never go here."""
    return config_dir() / "app.json"


def default_log_dir() -> Path:
    return logs_dir()


def resources_dir() -> Path:
    """resources/ of a source checkout, or the copy a frozen (PyInstaller) build unpacks next to the program."""
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def linux_autostart_dir() -> Path:
    """The XDG autostart folder: $XDG_CONFIG_HOME/autostart, ~/.config/autostart by default."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autostart"


def macos_launch_agents_dir() -> Path:
    return Path.home() / "Library" / "LaunchAgents"
