"""Where the app keeps its files. Functions, not module globals: nothing is resolved at import time.

On Linux these follow the XDG variables (XDG_CONFIG_HOME, XDG_STATE_HOME, ...) through platformdirs, which is
also how tests point the app at a temporary folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "Potluck"
APP_ID = "potluck"  # lower-case name for files, sockets and autostart entries


def config_dir() -> Path:
    return platformdirs.user_config_path(APP_NAME, appauthor=False)


def config_file() -> Path:
    """The app's settings (model, memory cap, ...), JSON; secrets never go here."""
    return config_dir() / "app.json"


def default_log_dir() -> Path:
    return platformdirs.user_log_path(APP_NAME, appauthor=False)


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
