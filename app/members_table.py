"""MembersTable: the swarm's PCs with their state, blocks and when last seen, or a friendly empty state when alone
(friends who are offline stay listed: a member who quit is not forgotten)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QStackedWidget, QTableWidget, QTableWidgetItem, QWidget

from potluck.app import theme
from potluck.app.formatting import block_range, last_seen_text, member_state_text
from potluck.app.stat_card import label
from potluck.core.protocol import Member

COLUMNS = ("Name", "State", "Blocks", "Last seen")
EMPTY_TEXT = "No friends yet. Invite a friend from the tray menu to share the model."
SUSPECT_MARK = " · suspect"
SUSPECT_TIP = ("This PC's spot checks found this member's results wrong: replies go through other PCs where they "
               "can, for a day")


def sorted_members(members: Sequence[Member], own_peer_id: str) -> list[Member]:
    """This PC first, then online friends by first block, then offline ones."""
    return sorted(members, key=lambda m: (m.peer_id != own_peer_id, not m.online, m.start_block, m.name.lower()))


class MembersTable(QStackedWidget):
    def __init__(self, parent: QWidget | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(parent)
        self._clock = clock
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setShowGrid(False)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft)
        self.empty_label = label(EMPTY_TEXT, "empty", wrap=True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.addWidget(self.empty_label)
        self.addWidget(self.table)

    def set_members(self, members: Sequence[Member], own_peer_id: str) -> None:
        friends = [m for m in members if m.peer_id != own_peer_id]  # offline ones stay listed, with last seen
        self.setCurrentWidget(self.table if friends else self.empty_label)
        rows = sorted_members(members, own_peer_id)
        self.table.setRowCount(len(rows))
        for row, member in enumerate(rows):
            name = f"{member.name or member.peer_id[:12]}" + (" (this PC)" if member.peer_id == own_peer_id else "")
            state = member_state_text(member.state, member.online) + (SUSPECT_MARK if member.suspect else "")
            cells = (name, state, block_range(member.start_block, member.end_block),
                     "now" if member.online else last_seen_text(member.last_seen, self._clock()))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if not member.online:
                    item.setForeground(QColor(theme.MUTED_TEXT))
                if member.suspect:  # this PC's spot checks caught its results wrong (SECURITY.md)
                    item.setForeground(QColor(theme.ERROR_TEXT))
                    item.setToolTip(SUSPECT_TIP)
                self.table.setItem(row, column, item)
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().height() + sum(self.table.rowHeight(r) for r in range(len(rows))) + 4
        self.table.setFixedHeight(min(height, 320))
        page = self.currentWidget()
        self.setFixedHeight(self.table.height() if page is self.table else max(page.sizeHint().height(), 48))

    def row_texts(self) -> list[tuple[str, ...]]:
        return [tuple(self.table.item(r, c).text() for c in range(len(COLUMNS))) for r in range(self.table.rowCount())]
