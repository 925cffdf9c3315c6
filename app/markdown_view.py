"""MarkdownView: a reply rendered as Markdown (Qt's own Markdown reader, QTextDocument.setMarkdown through
QLabel's MarkdownText) with each fenced code block in a monospace box of its own that has a Copy button.

`split_markdown` (pure, table-tested) cuts a reply into text and code segments; a fence still open while the reply
streams is a code block up to the end, so code looks like code as it arrives. The view reuses its widgets while
the segments keep their kinds, so streaming a token only changes a text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from potluck.app import theme

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)\s*$")
CODE_MAX_LINES = 24
COPIED_MS = 1500


@dataclass(frozen=True)
class Segment:
    kind: str  # text | code
    text: str
    language: str = ""  # a code block's language, as the fence names it
    closed: bool = True  # False: a code block whose closing fence has not arrived (yet)


def split_markdown(text: str) -> list[Segment]:
    """Text and fenced code blocks, in order. Empty text between blocks is dropped."""
    segments: list[Segment] = []
    lines = text.split("\n")
    buffer: list[str] = []
    fence, language = "", ""
    for line in lines:
        match = _FENCE.match(line)
        if not fence and match:
            if "".join(buffer).strip():
                segments.append(Segment("text", "\n".join(buffer).strip("\n")))
            buffer, fence, language = [], match.group(1), match.group(2)
        elif fence and match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and not match.group(2):
            segments.append(Segment("code", "\n".join(buffer), language))
            buffer, fence, language = [], "", ""
        else:
            buffer.append(line)
    if fence:
        segments.append(Segment("code", "\n".join(buffer), language, closed=False))
    elif "".join(buffer).strip():
        segments.append(Segment("text", "\n".join(buffer).strip("\n")))
    return segments


class CodeBlock(QFrame):
    """A code block: its language, a Copy button, and the code in a monospace box."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("code")
        self.setStyleSheet(f"QFrame#code {{ background: #f6f8fa; border: 1px solid {theme.BORDER}; border-radius: 6px; }}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 6)
        layout.setSpacing(2)
        header = QHBoxLayout()
        self.language_label = QLabel("")
        self.language_label.setObjectName("muted")
        header.addWidget(self.language_label)
        header.addStretch(1)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setStyleSheet("QPushButton { padding: 1px 8px; }")
        self.copy_button.clicked.connect(self.copy)
        header.addWidget(self.copy_button)
        layout.addLayout(header)
        self.code = QPlainTextEdit()
        self.code.setReadOnly(True)
        self.code.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.code.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.code.setFrameShape(QFrame.Shape.NoFrame)
        self.code.setStyleSheet("QPlainTextEdit { background: transparent; border: none; padding: 0; }")
        layout.addWidget(self.code)

    def set_segment(self, segment: Segment) -> None:
        self.language_label.setText(segment.language or "code")
        if self.code.toPlainText() != segment.text:
            self.code.setPlainText(segment.text)
        lines = min(CODE_MAX_LINES, max(1, segment.text.count("\n") + 1))
        spacing = self.code.fontMetrics().lineSpacing()
        bar = self.code.horizontalScrollBar().sizeHint().height() if self._too_wide(segment.text) else 0
        self.code.setFixedHeight(lines * spacing + 10 + bar)

    def _too_wide(self, text: str) -> bool:
        metrics = self.code.fontMetrics()
        return max((metrics.horizontalAdvance(line) for line in text.split("\n")), default=0) > self.code.width() - 12

    def natural_width(self) -> int:
        metrics = self.code.fontMetrics()
        return max((metrics.horizontalAdvance(line) for line in self.code.toPlainText().split("\n")), default=0) + 40

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.code.toPlainText())
        self.copy_button.setText("Copied")
        QTimer.singleShot(COPIED_MS, self, lambda: self.copy_button.setText("Copy"))


def _text_label() -> QLabel:
    text = QLabel()
    text.setTextFormat(Qt.TextFormat.MarkdownText)
    text.setWordWrap(True)
    text.setOpenExternalLinks(True)
    text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.LinksAccessibleByMouse)
    return text


class MarkdownView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self.markdown = ""
        self.segments: list[Segment] = []
        self.parts: list[QWidget] = []  # one widget per segment: QLabel (text) or CodeBlock

    def set_markdown(self, text: str) -> None:
        self.markdown = text
        segments = split_markdown(text)
        kinds = [s.kind for s in segments]
        if kinds[: len(self.parts)] != [s.kind for s in self.segments[: len(self.parts)]] or len(kinds) < len(self.parts):
            for widget in self.parts:  # the shape changed: build again (rare: a fence opened or closed)
                self._layout.removeWidget(widget)
                widget.deleteLater()
            self.parts = []
        while len(self.parts) < len(segments):
            widget = CodeBlock() if segments[len(self.parts)].kind == "code" else _text_label()
            self._layout.addWidget(widget)
            self.parts.append(widget)
        for widget, segment in zip(self.parts, segments):
            if isinstance(widget, CodeBlock):
                widget.set_segment(segment)
            elif widget.text() != segment.text:
                widget.setText(segment.text)
        self.segments = segments

    def code_blocks(self) -> list[CodeBlock]:
        return [w for w in self.parts if isinstance(w, CodeBlock)]

    def natural_width(self) -> int:
        """About how wide the reply wants to be (its longest line), for the bubble's width."""
        widths = [w.natural_width() if isinstance(w, CodeBlock) else
                  max((w.fontMetrics().horizontalAdvance(line) for line in w.text().split("\n")), default=0) + 4
                  for w in self.parts]
        return max(widths, default=0)
