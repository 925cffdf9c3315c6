"""Tray: the app's home. The icon shows the node's state; the menu, rebuilt each time it opens, shows a status
line and offers Pause/Resume serving (Try again after a failure, with Enter another invite code), Open dashboard,
Chat, Swarm and friends, Invite a friend, Settings and Quit.

"Invite a friend" opens the swarm page at its invite section, where the code is made and shown (large, with Copy,
its expiry and joins); "Enter another invite code" opens it at its join section.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from potluck.app.formatting import status_line
from potluck.app.icons import IconSet
from potluck.app.node_process import NodeProcess
from potluck.app.words import sentences
from potluck.core.protocol import AlertLevel, NodeState

MESSAGE_MS = 8000

_LEVEL_ICONS = {
    AlertLevel.INFO: QSystemTrayIcon.MessageIcon.Information,
    AlertLevel.WARNING: QSystemTrayIcon.MessageIcon.Warning,
    AlertLevel.CRITICAL: QSystemTrayIcon.MessageIcon.Critical,
}


class Tray(QObject):
    def __init__(
        self,
        node: NodeProcess,
        icons: IconSet,
        open_dashboard: Callable[[], None],
        open_chat: Callable[[], None],
        open_settings: Callable[[], None],
        open_swarm: Callable[[str], None],
        quit_app: Callable[[], None],
        parent: QObject | None = None,
    ) -> None:
        """open_swarm(section) shows the swarm page: section '' (the top), 'invite' or 'join'."""
        super().__init__(parent)
        self._node = node
        self._icons = icons
        self._open_dashboard = open_dashboard
        self._open_chat = open_chat
        self._open_settings = open_settings
        self._open_swarm = open_swarm
        self._quit_app = quit_app
        self.last_message: tuple[str, str] | None = None  # (title, text) of the last tray message
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.rebuild_menu)
        self.icon = QSystemTrayIcon(icons.for_node_state(node.state), self)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._on_activated)
        node.state_changed.connect(self._on_state)
        node.stats_received.connect(lambda _stats: self._update_tooltip())
        self.rebuild_menu()
        self._update_tooltip()

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def status_text(self) -> str:
        return status_line(self._node.state, self._node.last_stats, self._node.detail)

    def rebuild_menu(self) -> None:
        """Fill the menu for the current state (Qt calls this just before the menu opens)."""
        self.menu.clear()
        status = self._action("status", self.status_text(), None)
        status.setEnabled(False)
        font = status.font()
        font.setBold(True)
        status.setFont(font)
        self.menu.addSeparator()
        self._add_serving_action()
        self.menu.addSeparator()
        self._action("dashboard", "Open dashboard", self._open_dashboard)
        self._action("chat", "Chat", self._open_chat)
        self._action("swarm", "Swarm and friends…", lambda: self._open_swarm(""))
        self._action("invite", "Invite a friend…", self.invite_friend)
        self._action("settings", "Settings…", self._open_settings)
        self.menu.addSeparator()
        self._action("quit", "Quit Potluck", self._quit_app)

    def _add_serving_action(self) -> None:
        state = self._node.state
        if state in (NodeState.SERVING, NodeState.STARTING):
            self._action("pause", "Pause serving", self._node.pause)
        elif state in (NodeState.PAUSED, NodeState.STOPPED):
            self._action("resume", "Resume serving", self._node.resume)
        elif state is NodeState.FAILED:
            self._action("retry", "Try again", self._node.start)
            self._action("new_code", "Enter another invite code…", lambda: self._open_swarm("join"))
        else:  # draining or stopping: wait for it
            waiting = self._action("pause", "Pausing…" if state is NodeState.DRAINING else "Stopping…", None)
            waiting.setEnabled(False)

    def _action(self, name: str, text: str, slot: Callable[[], None] | None) -> QAction:
        action = QAction(text, self.menu)
        action.setObjectName(name)
        if slot is not None:
            action.triggered.connect(lambda _checked=False: slot())
        self.menu.addAction(action)
        return action

    def action(self, name: str) -> QAction | None:
        """The menu's action with this object name (status, pause, resume, retry, dashboard, chat, invite, ...)."""
        return next((a for a in self.menu.actions() if a.objectName() == name), None)

    def invite_friend(self) -> None:
        self._open_swarm("invite")

    def show_message(self, title: str, text: str, level: AlertLevel) -> None:
        text = sentences(text)  # parts from several places read as separate sentences
        self.last_message = (title, text)
        self.icon.showMessage(title, text, _LEVEL_ICONS[level], MESSAGE_MS)

    def _on_state(self, state: NodeState) -> None:
        self.icon.setIcon(self._icons.for_node_state(state))
        self._update_tooltip()
        if self.menu.isVisible():
            self.rebuild_menu()

    def _update_tooltip(self) -> None:
        self.icon.setToolTip(f"Potluck — {self.status_text()}")

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self._open_dashboard()
