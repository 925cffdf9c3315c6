"""MessageBubble: one message of the chat; an assistant's bubble grows token by token and ends with a caption
(speed, length, and which friends' PCs served which blocks)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from potluck.app import theme
from potluck.app.formatting import block_range
from potluck.app.stat_card import label, set_role
from potluck.core.protocol import Done, RouteHop, StopReason

BUBBLE_MAX_WIDTH_PX = 620
THINKING_TEXT = "…"


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
    def __init__(self, role: str, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self._text = text
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.frame = QFrame()
        mine = role == "user"
        self.frame.setStyleSheet(
            f"QFrame {{ background: {theme.ACCENT_SOFT if mine else theme.SURFACE}; border: 1px solid "
            f"{theme.ACCENT_SOFT if mine else theme.BORDER}; border-radius: 10px; }}"
            "QLabel { background: transparent; border: none; }")
        inner = QVBoxLayout(self.frame)
        inner.setContentsMargins(12, 8, 12, 8)
        inner.setSpacing(4)
        self.text_label = QLabel(text or THINKING_TEXT)
        self.text_label.setWordWrap(True)
        self.text_label.setTextFormat(Qt.TextFormat.PlainText)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        inner.addWidget(self.text_label)
        self.caption_label = label("", "muted", wrap=True)
        self.caption_label.setVisible(False)
        inner.addWidget(self.caption_label)
        if mine:
            row.addStretch(1)
        row.addWidget(self.frame)
        if not mine:
            row.addStretch(1)

    def _fit(self) -> None:
        """As wide as the text needs, at most BUBBLE_MAX_WIDTH_PX and 80% of the conversation's width."""
        metrics = self.text_label.fontMetrics()
        caption = self.caption_label.text() if self.caption_label.isVisible() else ""
        lines = (self.text_label.text() + "\n" + caption).split("\n")
        natural = max(metrics.horizontalAdvance(line) for line in lines) + 2 * 12 + 4
        cap = min(BUBBLE_MAX_WIDTH_PX, max(int(self.width() * 0.8), 160))
        self.frame.setFixedWidth(min(natural, cap))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    @property
    def text(self) -> str:
        return self._text

    def append(self, piece: str) -> None:
        self._text += piece
        self.text_label.setText(self._text or THINKING_TEXT)
        self._fit()

    def finish(self, done: Done) -> None:
        self._text = done.text or self._text
        self.text_label.setText(self._text or "(empty reply)")
        self.caption_label.setText(reply_caption(done))
        self.caption_label.setVisible(True)
        self._fit()

    def fail(self, message: str) -> None:
        if not self._text:
            self.text_label.setText("No reply.")
        set_role(self.caption_label, "error")
        self.caption_label.setText(message)
        self.caption_label.setVisible(True)
        self._fit()
