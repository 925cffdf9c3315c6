"""Notifier: desktop notifications (through the tray) when the swarm loses a block's last server, when blocks drop
to one server, and when the node fails. The same message is not repeated within `repeat_after_seconds`."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject

from potluck.app.node_process import NodeProcess
from potluck.app.words import sentences
from potluck.core.protocol import Alert, AlertLevel, NodeState

ShowMessage = Callable[[str, str, AlertLevel], None]  # (title, text, level)

ALERT_TITLES = {AlertLevel.CRITICAL: "The swarm has a gap", AlertLevel.WARNING: "The swarm is thin"}
FAILED_TITLE = "Potluck stopped serving"


class Notifier(QObject):
    def __init__(
        self,
        node: NodeProcess,
        show: ShowMessage,
        clock: Callable[[], float] = time.monotonic,
        repeat_after_seconds: float = 600.0,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._node = node
        self._show = show
        self._clock = clock
        self._repeat_after_seconds = repeat_after_seconds
        self._last_shown: dict[str, float] = {}
        node.alert_received.connect(self.on_alert)
        node.state_changed.connect(self.on_state)

    def on_alert(self, alert: Alert) -> None:
        if alert.level in ALERT_TITLES:
            self._notify(ALERT_TITLES[alert.level], alert.text, alert.level)

    def on_state(self, state: NodeState) -> None:
        if state is NodeState.FAILED:
            detail = self._node.detail or "The node stopped because of an error."
            self._notify(FAILED_TITLE, sentences(detail, "The dashboard shows the details and the log"),
                         AlertLevel.CRITICAL)

    def _notify(self, title: str, text: str, level: AlertLevel) -> None:
        now = self._clock()
        key = f"{title}\n{text}"
        last = self._last_shown.get(key)
        if last is not None and now - last < self._repeat_after_seconds:
            return
        self._last_shown[key] = now
        self._show(title, text, level)
