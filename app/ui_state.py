"""UI state in QSettings (window sizes, the chat's sampling settings), under keys from one enum.

Widgets receive the QSettings object through their constructor; tests hand them one backed by a temporary file.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QWidget


class UiKey(str, enum.Enum):
    DASHBOARD_GEOMETRY = "dashboard/geometry"
    CHAT_GEOMETRY = "chat/geometry"
    CHAT_SAMPLING = "chat/sampling"  # JSON of SamplingSettings
    CHAT_PANEL_VISIBLE = "chat/sampling_panel_visible"
    SETTINGS_GEOMETRY = "settings/geometry"
    SWARM_GEOMETRY = "swarm/geometry"


def save_geometry(settings: QSettings, key: UiKey, widget: QWidget) -> None:
    settings.setValue(key.value, widget.saveGeometry())


def restore_geometry(settings: QSettings, key: UiKey, widget: QWidget) -> bool:
    value = settings.value(key.value)
    return isinstance(value, QByteArray) and widget.restoreGeometry(value)


def load_json(settings: QSettings, key: UiKey) -> Any:
    """The stored JSON value, or None if absent or unreadable (UI state is never worth an error dialog)."""
    raw = settings.value(key.value)
    if not isinstance(raw, str):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def save_json(settings: QSettings, key: UiKey, value: Any) -> None:
    settings.setValue(key.value, json.dumps(value))


def load_bool(settings: QSettings, key: UiKey, default: bool) -> bool:
    raw = settings.value(key.value)
    if raw is None:
        return default
    return raw in (True, "true", "1", 1)
