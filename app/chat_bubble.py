"""MessageBubble: one message of the chat. The owner's messages are plain text; a reply is rendered as Markdown
(app/markdown_view.py: code blocks with a Copy button), grows token by token, and ends with a caption (speed,
length, and which friends' PCs served which blocks) and its actions: Copy (the whole reply, as Markdown) and
Regenerate (the last reply only: the chat window decides)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from potluck.app import theme
from potluck.app.formatting import block_range
from potluck.app.markdown_view import MarkdownView
from potluck.app.stat_card import label, set_role
from potluck.core.protocol import Done, RouteHop, StopReason

BUBBLE_MAX_WIDTH_PX = 680
THINKING_TEXT = "…"
COPIED_MS = 1500


def route_text(route: Sequence[RouteHop]) -> str:
    return " → ".join(f"{hop.name or hop.peer_id[:12]} ({block_range(hop.start_block, hop.end_block)})" for hop in route)


def reply_caption(done: Done) -> str:
    parts = [f"{done.tokens_per_second:.1f} tokens/s", f"{done.token_count} tokens"]
    if done.stop_reason is StopReason.CANCELLED:
        parts.append("stopped by you")
    elif done.stop_reason is StopReason.LENGTH:
        parts.append("reached the length limit")
    if done.route:
        parts.append("via " + route_text(done.route))
    return " · ".join(parts)


class MessageBubble(QWidget):
    regenerate_requested = Signal()

    def __init__(self, role: str, text: str = "", caption: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self._text = text
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.frame = QFrame()
        mine = role == "user"
        self.frame.setStyleSheet(
            f"QFrame#bubble {{ background: {theme.ACCENT_SOFT if mine else theme.SURFACE}; border: 1px solid "
            f"{theme.ACCENT_SOFT if mine else theme.BORDER}; border-radius: 10px; }}"
            "QLabel { background: transparent; border: none; }")
        self.frame.setObjectName("bubble")
        inner = QVBoxLayout(self.frame)
        inner.setContentsMargins(12, 8, 12, 8)
        inner.setSpacing(4)
        self.text_label = QLabel(text or THINKING_TEXT)  # the owner's words (plain), or a reply's placeholder
        self.text_label.setWordWrap(True)
        self.text_label.setTextFormat(Qt.TextFormat.PlainText)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        inner.addWidget(self.text_label)
        self.view = MarkdownView()
        self.view.setVisible(False)
        inner.addWidget(self.view)
        self.caption_label = label(caption, "muted", wrap=True)
        self.caption_label.setVisible(bool(caption))
        inner.addWidget(self.caption_label)
        self.copy_button = QPushButton("Copy")
        self.regenerate_button = QPushButton("Regenerate")
        actions = QHBoxLayout()
        actions.setContentsMargins(0, 0, 0, 0)
        for button in (self.copy_button, self.regenerate_button):
            button.setStyleSheet("QPushButton { padding: 2px 10px; }")
            actions.addWidget(button)
        actions.addStretch(1)
        self.actions = QWidget()
        self.actions.setLayout(actions)
        self.actions.setVisible(False)
        self.regenerate_button.setVisible(False)
        inner.addWidget(self.actions)
        self.copy_button.clicked.connect(self.copy)
        self.regenerate_button.clicked.connect(self.regenerate_requested)
        if mine:
            row.addStretch(1)
        row.addWidget(self.frame)
        if not mine:
            row.addStretch(1)
        if text and not mine:
            self._render()
            self.actions.setVisible(True)

    def _fit(self) -> None:
        """As wide as the text needs, at most BUBBLE_MAX_WIDTH_PX and 85% of the conversation's width."""
        metrics = self.text_label.fontMetrics()
        caption = self.caption_label.text() if self.caption_label.isVisible() else ""
        if self.view.isVisible():
            natural = max(self.view.natural_width(), metrics.horizontalAdvance(caption[:90]))
        else:
            lines = (self.text_label.text() + "\n" + caption).split("\n")
            natural = max(metrics.horizontalAdvance(line) for line in lines)
        if self.actions.isVisible():
            natural = max(natural, self.actions.sizeHint().width())
        cap = min(BUBBLE_MAX_WIDTH_PX, max(int(self.width() * 0.85), 160))
        self.frame.setFixedWidth(min(natural + 2 * 12 + 4, cap))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    @property
    def text(self) -> str:
        return self._text

    def _render(self) -> None:
        """A reply's text as Markdown (the owner's own messages stay plain)."""
        if self.role == "user" or not self._text:
            self.text_label.setVisible(True)
            self.view.setVisible(False)
            return
        self.text_label.setVisible(False)
        self.view.setVisible(True)
        self.view.set_markdown(self._text)

    def append(self, piece: str) -> None:
        self._text += piece
        self.text_label.setText(self._text or THINKING_TEXT)
        self._render()
        self._fit()

    def finish(self, done: Done) -> None:
        self._text = done.text or self._text
        self.text_label.setText(self._text or "(empty reply)")
        self._render()
        self.caption_label.setText(reply_caption(done))
        self.caption_label.setVisible(True)
        self.actions.setVisible(bool(self._text))
        self._fit()

    def fail(self, message: str) -> None:
        if not self._text:
            self.text_label.setText("No reply.")
        set_role(self.caption_label, "error")
        self.caption_label.setText(message)
        self.caption_label.setVisible(True)
        self._fit()

    def set_regenerate_visible(self, visible: bool) -> None:
        self.regenerate_button.setVisible(visible)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self._text)
        self.copy_button.setText("Copied")
        QTimer.singleShot(COPIED_MS, self, lambda: self.copy_button.setText("Copy"))
