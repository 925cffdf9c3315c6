"""ChatWindow: conversations with the pooled model through the node process, as people know them from chat apps.

Each send is one `generate` command carrying the whole conversation (the node applies the model's chat template);
tokens stream back as `token` events, a `done` event closes the reply with its speed and route. Replies render as
Markdown (code blocks with a Copy button); each reply can be copied, and the last one regenerated. Conversations
are kept across restarts (app/conversations.py, in the data folder's SQLite file) and listed on the left: New
chat, pick one, Delete. Stop sends `cancel`, and so do closing the window, New chat and switching conversations:
the node then closes the friends' sessions at once. A failed send never loses the typed message: it goes back
into the box.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from potluck.app import theme
from potluck.app.chat_bubble import MessageBubble
from potluck.app.conversation_list import AskTitle, ConversationList
from potluck.app.conversation_list import ask_title as ask_conversation_title
from potluck.app.conversations import ConversationStore, StoredMessage
from potluck.app.icons import IconSet
from potluck.app.node_process import NodeProcess
from potluck.app.sampling_panel import SamplingPanel
from potluck.app.stat_card import label
from potluck.app.swarm_members import Confirm, ask
from potluck.app.ui_state import UiKey, load_bool, restore_geometry, save_geometry
from potluck.core import protocol
from potluck.core.protocol import ChatMessage, NodeState

EMPTY_TEXT = "Ask the pooled model anything.\nReplies stream in as your friends' PCs compute them, block by block."
NOT_RUNNING_TEXT = "The node is not running, so nothing was sent. Start serving from the tray menu, then send again."


@dataclass
class PendingReply:
    request_id: str
    user_text: str
    bubble: MessageBubble
    regenerating: bool = False  # a new answer to the last message: the stored old one is replaced when it is done


class ChatWindow(QWidget):
    def __init__(
        self,
        node: NodeProcess,
        settings: QSettings,
        icons: IconSet,
        new_request_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        parent: QWidget | None = None,
        *,
        conversations: Callable[[], ConversationStore] = ConversationStore,
        confirm: Confirm = ask,
        ask_title: AskTitle = ask_conversation_title,
    ) -> None:
        """conversations() opens the store of conversations (the data folder's SQLite file by default);
        ask_title(parent, current) asks for a conversation's new name (a dialog by default)."""
        super().__init__(parent)
        self._node = node
        self._settings = settings
        self._new_request_id = new_request_id
        self._confirm = confirm
        self.store = conversations()
        self.conversation_id: str | None = None  # None: a new conversation, stored once its first reply is done
        self.history: list[ChatMessage] = []
        self.pending: PendingReply | None = None
        self._request_id = ""  # of the generate command sent last
        self.setWindowTitle("Potluck — Chat")
        self.setWindowIcon(icons.app_icon())
        self.resize(1180, 720)
        restore_geometry(settings, UiKey.CHAT_GEOMETRY, self)

        outer = QHBoxLayout(self)
        outer.setContentsMargins(theme.MARGIN_PX, theme.MARGIN_PX, theme.MARGIN_PX, theme.MARGIN_PX)
        outer.setSpacing(theme.SPACING_PX)
        self.conversation_list = ConversationList(ask=ask_title)
        self.conversation_list.setFixedWidth(220)
        self.conversation_list.new_requested.connect(self.new_chat)
        self.conversation_list.chosen.connect(self.open_conversation)
        self.conversation_list.delete_requested.connect(self.delete_conversation)
        self.conversation_list.rename_requested.connect(self.rename_conversation)
        self.new_chat_button = self.conversation_list.new_button
        outer.addWidget(self.conversation_list)
        outer.addLayout(self._build_conversation(), 1)
        self.sampling = SamplingPanel(settings)
        self.sampling.setFixedWidth(300)
        self.sampling.setVisible(load_bool(settings, UiKey.CHAT_PANEL_VISIBLE, True))
        outer.addWidget(self.sampling)

        node.token_received.connect(self._on_token)
        node.done_received.connect(self._on_done)
        node.error_received.connect(self._on_error)
        node.state_changed.connect(self._on_state)
        self._refresh_list()
        self._update_buttons()

    def _build_conversation(self) -> QVBoxLayout:
        column = QVBoxLayout()
        column.setSpacing(theme.SPACING_PX)
        top = QHBoxLayout()
        self.title_label = label("Chat with the swarm", "title")
        top.addWidget(self.title_label, 1)
        self.settings_button = QPushButton("Reply settings")
        self.settings_button.setCheckable(True)
        self.settings_button.setChecked(load_bool(self._settings, UiKey.CHAT_PANEL_VISIBLE, True))
        self.settings_button.toggled.connect(self._toggle_panel)
        top.addWidget(self.settings_button)
        column.addLayout(top)

        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setStyleSheet(f"QScrollArea {{ background: {theme.BACKGROUND}; }}")
        holder = QWidget()
        self.messages_layout = QVBoxLayout(holder)
        self.messages_layout.setContentsMargins(0, 0, 8, 0)
        self.messages_layout.setSpacing(10)
        self.empty_label = label(EMPTY_TEXT, "empty", wrap=True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.messages_layout.addWidget(self.empty_label)
        self.messages_layout.addStretch(1)
        self.scroll.setWidget(holder)
        column.addWidget(self.scroll, 1)

        self.notice_label = label("", "error", wrap=True)
        self.notice_label.setVisible(False)
        column.addWidget(self.notice_label)

        row = QHBoxLayout()
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Write a message… (Enter sends, Shift+Enter for a new line)")
        self.input.setFixedHeight(76)
        self.input.installEventFilter(self)
        self.input.textChanged.connect(self._update_buttons)
        row.addWidget(self.input, 1)
        buttons = QVBoxLayout()
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("primary")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        row.addLayout(buttons)
        column.addLayout(row)
        return column

    # ------------------------------------------------------------------ actions

    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.pending is not None:
            return
        if self._ask(text, self.history):
            self._add_bubble(MessageBubble("user", text))
            self._start_reply(text, regenerating=False)
            self.input.clear()
            self._update_buttons()

    def regenerate(self) -> None:
        """A new answer to the last message, in place of the last reply."""
        if self.pending is not None or len(self.history) < 2 or self.history[-1].role != "assistant":
            return
        last_reply = self.bubbles()[-1]
        previous = self.history[:-2]
        user_text = self.history[-2].content
        if self._ask(user_text, previous):
            self.history = previous
            self.messages_layout.removeWidget(last_reply)
            last_reply.deleteLater()
            self._start_reply(user_text, regenerating=True)

    def _ask(self, text: str, history: list[ChatMessage]) -> bool:
        """Send the generate command; False (and the reason shown) when the node cannot take it."""
        if not self._node.is_running or self._node.hello is None:
            self._notice(NOT_RUNNING_TEXT)
            return False
        values = self.sampling.values()
        self.sampling.save()
        self._request_id = self._new_request_id()
        command = protocol.Generate(
            request_id=self._request_id, messages=(*history, ChatMessage("user", text)),
            max_new_tokens=values.max_new_tokens, temperature=values.temperature, top_p=values.top_p,
            top_k=values.top_k, repetition_penalty=values.repetition_penalty, seed=values.seed,
            speculative="lookup" if values.guess_ahead else "off", private=values.private,
        )
        if not self._node.send(command):
            self._notice(NOT_RUNNING_TEXT)
            return False
        self._notice("")
        return True

    def _start_reply(self, user_text: str, regenerating: bool) -> None:
        for bubble in self.bubbles():
            bubble.set_regenerate_visible(False)
        bubble = MessageBubble("assistant")
        bubble.regenerate_requested.connect(self.regenerate)
        self._add_bubble(bubble)
        self.pending = PendingReply(self._request_id, user_text, bubble, regenerating)
        self._update_buttons()

    def stop(self) -> None:
        if self.pending is not None:
            self._node.send(protocol.Cancel(request_id=self.pending.request_id))
            self.stop_button.setEnabled(False)

    def _abandon_pending(self) -> None:
        """Cancel the reply in progress (the friends' PCs stop computing it) and forget it."""
        if self.pending is not None:
            self._node.send(protocol.Cancel(request_id=self.pending.request_id))
            self.pending = None

    def new_chat(self) -> None:
        self._abandon_pending()
        self.conversation_id = None
        self._show_messages([])
        self._refresh_list()
        self.input.setFocus()

    def open_conversation(self, conversation_id: str) -> None:
        if conversation_id == self.conversation_id and self.pending is None:
            return
        self._abandon_pending()
        self.conversation_id = conversation_id
        self._show_messages(self.store.messages(conversation_id))
        self._refresh_list()

    def delete_conversation(self, conversation_id: str) -> None:
        if not self._confirm("Delete this conversation?", "It is removed from this PC for good."):
            return
        self.store.delete(conversation_id)
        if conversation_id == self.conversation_id:
            self.new_chat()
        self._refresh_list()

    def rename_conversation(self, conversation_id: str, text: str) -> None:
        try:
            self.store.rename(conversation_id, text)
        except ValueError as exc:
            self._notice(f"Could not rename: {exc}")
        self._refresh_list()

    def bubbles(self) -> list[MessageBubble]:
        widgets = (self.messages_layout.itemAt(i).widget() for i in range(self.messages_layout.count()))
        return [w for w in widgets if isinstance(w, MessageBubble)]

    # ------------------------------------------------------------------ node events

    def _on_token(self, token: protocol.Token) -> None:
        if self.pending is not None and token.request_id == self.pending.request_id:
            self.pending.bubble.append(token.text)
            self._scroll_to_end()

    def _on_done(self, done: protocol.Done) -> None:
        if self.pending is None or done.request_id != self.pending.request_id:
            return
        pending, self.pending = self.pending, None
        pending.bubble.finish(done)
        self._keep(pending.user_text, pending.bubble, pending.regenerating)
        pending.bubble.set_regenerate_visible(bool(pending.bubble.text))
        self._update_buttons()
        self._scroll_to_end()

    def _keep(self, user_text: str, reply: MessageBubble, regenerating: bool) -> None:
        """The finished exchange joins the conversation and its store."""
        if self.conversation_id is None:
            self.conversation_id = self.store.create()
        if regenerating:
            self.store.truncate(self.conversation_id, len(self.history))
        self.history += [ChatMessage("user", user_text), ChatMessage("assistant", reply.text)]
        self.store.append(self.conversation_id, StoredMessage("user", user_text))
        self.store.append(self.conversation_id, StoredMessage("assistant", reply.text, reply.caption_label.text()))
        self._refresh_list()

    def _on_error(self, error: protocol.Error) -> None:
        if self.pending is not None and error.request_id == self.pending.request_id:
            self._fail_pending(f"No reply: {error.message}")

    def _on_state(self, state: NodeState) -> None:
        if self.pending is not None and state in (NodeState.STOPPED, NodeState.FAILED, NodeState.STARTING) \
                and not self._node.is_running:
            self._fail_pending("The node stopped before the reply finished.")
        self._update_buttons()

    def _fail_pending(self, message: str) -> None:
        pending, self.pending = self.pending, None
        sentence = message if message.endswith((".", "!", "?")) else message + "."
        pending.bubble.fail(sentence + " Your message is back in the box below, so you can send it again.")
        if not self.input.toPlainText().strip():
            self.input.setPlainText(pending.user_text)
        self._update_buttons()

    # ------------------------------------------------------------------ helpers

    def _show_messages(self, messages: list[StoredMessage]) -> None:
        while self.messages_layout.count() > 2:  # keep the empty-state label and the final stretch
            item = self.messages_layout.takeAt(1)
            item.widget().deleteLater()
        self.history = [ChatMessage(m.role, m.content) for m in messages]
        for message in messages:
            bubble = MessageBubble(message.role, message.content, message.caption)
            bubble.regenerate_requested.connect(self.regenerate)
            self._add_bubble(bubble)
        replies = [b for b in self.bubbles() if b.role == "assistant"]
        if replies and self.history and self.history[-1].role == "assistant":
            replies[-1].set_regenerate_visible(True)
        self.empty_label.setVisible(not messages)
        self._notice("")
        self._update_buttons()

    def _refresh_list(self) -> None:
        self.conversation_list.set_conversations(self.store.conversations(), self.conversation_id)

    def _add_bubble(self, bubble: MessageBubble) -> None:
        self.empty_label.setVisible(False)
        self.messages_layout.insertWidget(self.messages_layout.count() - 1, bubble)
        self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        QTimer.singleShot(0, self, self._scroll_now)

    def _scroll_now(self) -> None:
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _notice(self, text: str) -> None:
        self.notice_label.setText(text)
        self.notice_label.setVisible(bool(text))

    def _update_buttons(self) -> None:
        busy = self.pending is not None
        self.send_button.setEnabled(not busy and bool(self.input.toPlainText().strip()))
        self.stop_button.setEnabled(busy)

    def _toggle_panel(self, visible: bool) -> None:
        self.sampling.setVisible(visible)
        self._settings.setValue(UiKey.CHAT_PANEL_VISIBLE.value, visible)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.input and event.type() == QEvent.Type.KeyPress:
            enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.send()
                return True
        return super().eventFilter(watched, event)

    def closeEvent(self, event) -> None:
        """Closing the window stops the reply: the friends' PCs stop computing it (it is kept as far as it got)."""
        self.stop()
        save_geometry(self._settings, UiKey.CHAT_GEOMETRY, self)
        self.sampling.save()
        super().closeEvent(event)
