"""ChatWindow: a conversation with the pooled model through the node process.

Each send is one `generate` command carrying the whole conversation (the node applies the model's chat template);
tokens stream back as `token` events, a `done` event closes the reply with its speed and route. Stop sends
`cancel`; New chat forgets the conversation. A failed send never loses the typed message: it goes back into the box.
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
from potluck.app.icons import IconSet
from potluck.app.node_process import NodeProcess
from potluck.app.sampling_panel import SamplingPanel
from potluck.app.stat_card import label
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


class ChatWindow(QWidget):
    def __init__(
        self,
        node: NodeProcess,
        settings: QSettings,
        icons: IconSet,
        new_request_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._node = node
        self._settings = settings
        self._new_request_id = new_request_id
        self.history: list[ChatMessage] = []
        self.pending: PendingReply | None = None
        self.setWindowTitle("Potluck — Chat")
        self.setWindowIcon(icons.app_icon())
        self.resize(980, 720)
        restore_geometry(settings, UiKey.CHAT_GEOMETRY, self)

        outer = QHBoxLayout(self)
        outer.setContentsMargins(theme.MARGIN_PX, theme.MARGIN_PX, theme.MARGIN_PX, theme.MARGIN_PX)
        outer.setSpacing(theme.SPACING_PX)
        outer.addLayout(self._build_conversation(), 1)
        self.sampling = SamplingPanel(settings)
        self.sampling.setFixedWidth(300)
        self.sampling.setVisible(load_bool(settings, UiKey.CHAT_PANEL_VISIBLE, True))
        outer.addWidget(self.sampling)

        node.token_received.connect(self._on_token)
        node.done_received.connect(self._on_done)
        node.error_received.connect(self._on_error)
        node.state_changed.connect(self._on_state)
        self._update_buttons()

    def _build_conversation(self) -> QVBoxLayout:
        column = QVBoxLayout()
        column.setSpacing(theme.SPACING_PX)
        top = QHBoxLayout()
        top.addWidget(label("Chat with the swarm", "title"))
        top.addStretch(1)
        self.new_chat_button = QPushButton("New chat")
        self.new_chat_button.clicked.connect(self.new_chat)
        self.settings_button = QPushButton("Reply settings")
        self.settings_button.setCheckable(True)
        self.settings_button.setChecked(load_bool(self._settings, UiKey.CHAT_PANEL_VISIBLE, True))
        self.settings_button.toggled.connect(self._toggle_panel)
        top.addWidget(self.new_chat_button)
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
        if not self._node.is_running or self._node.hello is None:
            self._notice(NOT_RUNNING_TEXT)
            return
        values = self.sampling.values()
        self.sampling.save()
        request_id = self._new_request_id()
        command = protocol.Generate(
            request_id=request_id, messages=(*self.history, ChatMessage("user", text)),
            max_new_tokens=values.max_new_tokens, temperature=values.temperature, top_p=values.top_p,
            top_k=values.top_k, repetition_penalty=values.repetition_penalty, seed=values.seed,
        )
        if not self._node.send(command):
            self._notice(NOT_RUNNING_TEXT)
            return
        self._notice("")
        self._add_bubble(MessageBubble("user", text))
        bubble = MessageBubble("assistant")
        self._add_bubble(bubble)
        self.pending = PendingReply(request_id, text, bubble)
        self.input.clear()
        self._update_buttons()

    def stop(self) -> None:
        if self.pending is not None:
            self._node.send(protocol.Cancel(request_id=self.pending.request_id))
            self.stop_button.setEnabled(False)

    def new_chat(self) -> None:
        if self.pending is not None:
            self._node.send(protocol.Cancel(request_id=self.pending.request_id))
            self.pending = None
        self.history.clear()
        while self.messages_layout.count() > 2:  # keep the empty-state label and the final stretch
            item = self.messages_layout.takeAt(1)
            item.widget().deleteLater()
        self.empty_label.setVisible(True)
        self._notice("")
        self._update_buttons()
        self.input.setFocus()

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
        self.pending.bubble.finish(done)
        self.history += [ChatMessage("user", self.pending.user_text), ChatMessage("assistant", done.text)]
        self.pending = None
        self._update_buttons()
        self._scroll_to_end()

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
        save_geometry(self._settings, UiKey.CHAT_GEOMETRY, self)
        self.sampling.save()
        super().closeEvent(event)
