"""SwarmMembersTable: everyone on the swarm's member list with role, state, blocks and when last seen, and a Remove
button (asking first) for each member this PC's role lets it remove. Removed members are listed greyed out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QMessageBox, QPushButton, QTableWidget, QTableWidgetItem

from potluck.app import theme
from potluck.app.formatting import block_range, format_duration, member_state_text
from potluck.core import protocol

COLUMNS = ("Name", "Role", "State", "Blocks", "Last seen", "")
REMOVE_COLUMN_PX = 110
Confirm = Callable[[str, str], bool]  # (title, question) -> yes?


def ask(title: str, question: str) -> bool:
    answer = QMessageBox.question(None, title, question, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def last_seen_text(member: protocol.SwarmMember, now: float) -> str:
    if member.online:
        return "now"
    if member.last_seen <= 0:
        return "not since this PC started"
    if now - member.last_seen < 60:
        return "just now"
    return f"{format_duration(now - member.last_seen)} ago"


def removable(members: Sequence[protocol.SwarmMember]) -> set[str]:
    """Whom this PC may remove, by the swarm's roles (core/swarm/membership.may_revoke): the owner anyone, an admin
    plain members, a plain member no one. A list without roles (made before them) lets any member remove others."""
    me = next((m for m in members if m.this_pc), None)
    others = [m for m in members if m.active and not m.this_pc]
    if me is None or not me.active:
        return set()
    if not any(m.role == "owner" for m in members) or me.role == "owner":
        return {m.peer_id for m in others}
    return {m.peer_id for m in others if me.role == "admin" and m.role == "member"}


def member_rows(members: Sequence[protocol.SwarmMember], now: float) -> list[tuple[str, ...]]:
    """The table's text, one tuple per member: this PC first, then active members online first, then removed."""
    ordered = sorted(members, key=lambda m: (not m.this_pc, not m.active, not m.online, m.start_block, m.name.lower()))
    rows = []
    for m in ordered:
        name = (m.name or m.peer_id[:12]) + (" (this PC)" if m.this_pc else "")
        state = "Removed" if not m.active else member_state_text(m.state, m.online)
        blocks = block_range(m.start_block, m.end_block) if m.online else "—"
        rows.append((name, m.role.capitalize(), state, blocks, "—" if not m.active else last_seen_text(m, now)))
    return rows


class SwarmMembersTable(QTableWidget):
    def __init__(self, revoke: Callable[[str], None], confirm: Confirm = ask, clock=time.time) -> None:
        super().__init__(0, len(COLUMNS))
        self._revoke = revoke
        self._confirm = confirm
        self._clock = clock
        self.members: list[protocol.SwarmMember] = []
        self.setHorizontalHeaderLabels(COLUMNS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setShowGrid(False)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Fixed)  # the Remove… buttons
        header.resizeSection(len(COLUMNS) - 1, REMOVE_COLUMN_PX)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft)

    def set_members(self, members: Sequence[protocol.SwarmMember], may_remove: bool = True) -> None:
        now = self._clock()
        self.members = sorted(members, key=lambda m: (not m.this_pc, not m.active, not m.online, m.start_block,
                                                      m.name.lower()))
        rows = member_rows(members, now)
        allowed = removable(members) if may_remove else set()
        self.setRowCount(len(rows))
        for row, (member, texts) in enumerate(zip(self.members, rows)):
            for column, text in enumerate(texts):
                item = QTableWidgetItem(text)
                if not member.online or not member.active:
                    item.setForeground(QColor(theme.MUTED_TEXT))
                self.setItem(row, column, item)
            self.removeCellWidget(row, len(COLUMNS) - 1)
            self.setItem(row, len(COLUMNS) - 1, QTableWidgetItem(""))
            if member.peer_id in allowed:
                button = QPushButton("Remove…")
                button.setObjectName(f"remove-{member.peer_id}")
                button.clicked.connect(lambda _checked=False, m=member: self._ask_remove(m))
                self.setCellWidget(row, len(COLUMNS) - 1, button)
        self.resizeRowsToContents()
        height = self.horizontalHeader().height() + sum(self.rowHeight(r) for r in range(len(rows))) + 4
        self.setFixedHeight(min(max(height, 60), 300))

    def row_texts(self) -> list[tuple[str, ...]]:
        return [tuple(self.item(r, c).text() for c in range(len(COLUMNS) - 1)) for r in range(self.rowCount())]

    def remove_button(self, peer_id: str) -> QPushButton | None:
        return self.findChild(QPushButton, f"remove-{peer_id}")

    def _ask_remove(self, member: protocol.SwarmMember) -> None:
        name = member.name or member.peer_id[:12]
        question = (f"Remove {name} from the swarm for good? Its PC stops being able to serve or use the swarm within "
                    "a minute, and the codes it used or made stop working. To come back it needs a new invite code.")
        if self._confirm(f"Remove {name}?", question):
            self._revoke(member.peer_id)
