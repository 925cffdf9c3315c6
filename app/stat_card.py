"""StatCard: a titled figure with an optional line under it, for the dashboard; and `card_frame` for sections."""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from potluck.app import theme


def card_frame(parent: QWidget | None = None) -> tuple[QFrame, QVBoxLayout]:
    frame = QFrame(parent)
    frame.setObjectName("card")
    layout = QVBoxLayout(frame)
    layout.setContentsMargins(theme.CARD_PADDING_PX, theme.CARD_PADDING_PX, theme.CARD_PADDING_PX, theme.CARD_PADDING_PX)
    layout.setSpacing(6)
    return frame, layout


def label(text: str = "", role: str = "", wrap: bool = False, parent: QWidget | None = None) -> QLabel:
    """A QLabel with a style role from the theme: '', 'muted', 'title', 'figure', 'error', 'empty'."""
    widget = QLabel(text, parent)
    if role:
        widget.setObjectName(role)
    widget.setWordWrap(wrap)
    return widget


class StatCard(QFrame):
    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.CARD_PADDING_PX, 10, theme.CARD_PADDING_PX, 10)
        layout.setSpacing(2)
        self.title_label = label(title, "muted")
        self.value_label = label("—", "figure")
        self.sub_label = label("", "muted", wrap=True)  # never wider than its card: the grid keeps its columns
        for widget in (self.title_label, self.value_label, self.sub_label):
            layout.addWidget(widget)
        layout.addStretch(1)

    def set_value(self, value: str, sub: str = "") -> None:
        self.value_label.setText(value)
        self.sub_label.setText(sub)
        self.sub_label.setVisible(bool(sub))


def set_role(widget: QWidget, role: str) -> None:
    """Change a widget's style role and re-apply the style sheet to it."""
    widget.setObjectName(role)
    widget.style().unpolish(widget)
    widget.style().polish(widget)
