"""MembersTable: the swarm's PCs with their state and blocks, or a friendly empty state when alone."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QStackedWidget, QTableWidget, QTableWidgetItem, QWidget

from potluck.app import theme
from potluck.app.formatting import block_range, member_state_text
from potluck.app.stat_card import label
from potluck.core.protocol import Member

COLUMNS = ("Name", "State", "Blocks")
EMPTY_TEXT = "No friends online yet. Invite a friend from the tray menu to share the model."


def sorted_members(members: Sequence[Member], own_peer_id: str) -> list[Member]:
    """This PC first, then online friends by first block, then offline ones."""
    return sorted(members, key=lambda m: (m.peer_id != own_peer_id, not m.online, m.start_block, m.name.lower()))


class MembersTable(QStackedWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setShowGrid(False)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft)
        self.empty_label = label(EMPTY_TEXT, "empty", wrap=True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.addWidget(self.empty_label)
        self.addWidget(self.table)

    def set_members(self, members: Sequence[Member], own_peer_id: str) -> None:
        friends = [m for m in members if m.peer_id != own_peer_id]
        if not any(m.online for m in friends):
            offline = "No friends online right now. " + self._offline_names(friends)
            self.empty_label.setText(offline if friends else EMPTY_TEXT)
            self.setCurrentWidget(self.empty_label)
        else:
            self.setCurrentWidget(self.table)
        rows = sorted_members(members, own_peer_id)
        self.table.setRowCount(len(rows))
        for row, member in enumerate(rows):
            name = f"{member.name or member.peer_id[:12]}" + (" (this PC)" if member.peer_id == own_peer_id else "")
            cells = (name, member_state_text(member.state, member.online), block_range(member.start_block, member.end_block))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if not member.online:
                    item.setForeground(QColor(theme.MUTED_TEXT))
                self.table.setItem(row, column, item)
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().height() + sum(self.table.rowHeight(r) for r in range(len(rows))) + 4
        self.table.setFixedHeight(min(height, 320))
        page = self.currentWidget()
        self.setFixedHeight(self.table.height() if page is self.table else max(page.sizeHint().height(), 48))

    def row_texts(self) -> list[tuple[str, ...]]:
        return [tuple(self.table.item(r, c).text() for c in range(len(COLUMNS))) for r in range(self.table.rowCount())]

    @staticmethod
    def _offline_names(friends: Sequence[Member]) -> str:
        names = ", ".join(m.name or m.peer_id[:12] for m in friends[:3])
        return f"Known but offline: {names}."
