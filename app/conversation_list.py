"""ConversationList: the chat's column of conversations kept across restarts (newest first), with New chat, Rename
(or a double-click) and Delete. It only shows, picks and asks; the chat window loads and stores
(app/conversations.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from potluck.app.conversations import Conversation

ID_ROLE = Qt.ItemDataRole.UserRole
TITLE_ROLE = Qt.ItemDataRole.UserRole + 1
AskTitle = Callable[[QWidget, str], "str | None"]  # (parent, current title) -> the new name, None when cancelled


def ask_title(parent: QWidget, current: str) -> str | None:
    text, ok = QInputDialog.getText(parent, "Rename conversation", "Name:", text=current)
    return text if ok else None


def when_text(updated: float, now: dt.datetime) -> str:
    """'14:02' today, 'yesterday', 'Mon 3 Mar' this year, else '3 Mar 2025'."""
    moment = dt.datetime.fromtimestamp(updated)
    days = (now.date() - moment.date()).days
    if days == 0:
        return moment.strftime("%H:%M")
    if days == 1:
        return "yesterday"
    if moment.year == now.year:
        return f"{moment.strftime('%a')} {moment.day} {moment.strftime('%b')}"
    return f"{moment.day} {moment.strftime('%b')} {moment.year}"


class ConversationList(QWidget):
    chosen = Signal(str)  # a conversation id
    new_requested = Signal()
    delete_requested = Signal(str)
    rename_requested = Signal(str, str)  # a conversation id, the name typed

    def __init__(self, now: Callable[[], dt.datetime] = dt.datetime.now, parent: QWidget | None = None, *,
                 ask: AskTitle = ask_title) -> None:
        super().__init__(parent)
        self._now, self._ask = now, ask
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.new_button = QPushButton("New chat")
        self.new_button.setObjectName("primary")
        self.new_button.clicked.connect(self.new_requested)
        layout.addWidget(self.new_button)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setWordWrap(True)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # long titles wrap
        self.list.setStyleSheet("QListWidget::item { padding: 6px 4px; }")
        self.list.itemClicked.connect(lambda item: self.chosen.emit(item.data(ID_ROLE)))
        self.list.itemDoubleClicked.connect(self._rename)
        layout.addWidget(self.list, 1)
        buttons = QHBoxLayout()
        self.rename_button = QPushButton("Rename")
        self.rename_button.clicked.connect(lambda: self._rename(self.list.currentItem()))
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self._delete_selected)
        buttons.addWidget(self.rename_button)
        buttons.addWidget(self.delete_button)
        layout.addLayout(buttons)
        self._update_buttons()
        self.list.itemSelectionChanged.connect(self._update_buttons)

    def set_conversations(self, conversations: Sequence[Conversation], current: str | None) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        now = self._now()
        for conversation in conversations:
            item = QListWidgetItem(f"{conversation.title}\n{when_text(conversation.updated, now)}")
            item.setData(ID_ROLE, conversation.conversation_id)
            item.setData(TITLE_ROLE, conversation.title)
            item.setToolTip(conversation.title)
            self.list.addItem(item)
            if conversation.conversation_id == current:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        self._update_buttons()

    def titles(self) -> list[str]:
        return [self.list.item(i).data(TITLE_ROLE) for i in range(self.list.count())]

    def select(self, row: int) -> None:
        item = self.list.item(row)
        self.list.setCurrentItem(item)
        self.chosen.emit(item.data(ID_ROLE))

    def _rename(self, item: QListWidgetItem | None) -> None:
        if item is None:
            return
        current = item.data(TITLE_ROLE)
        text = self._ask(self, current)
        if text is not None and text.strip() and text.strip() != current:
            self.rename_requested.emit(item.data(ID_ROLE), text)

    def _delete_selected(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.delete_requested.emit(item.data(ID_ROLE))

    def _update_buttons(self) -> None:
        chosen = self.list.currentItem() is not None
        self.delete_button.setEnabled(chosen)
        self.rename_button.setEnabled(chosen)
