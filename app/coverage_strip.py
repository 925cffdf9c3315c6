"""CoverageStrip: one cell per model block, coloured by how many servers hold it (gaps in red); this PC's blocks
are underlined. Hovering a cell names the block and its server count."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from potluck.app import theme
from potluck.app.formatting import block_range

CELL_GAP_PX = 2
STRIP_HEIGHT_PX = 26
MARK_HEIGHT_PX = 4  # the underline under this PC's blocks


def coverage_color(replicas: int) -> QColor:
    if replicas <= 0:
        return QColor(theme.COVERAGE_GAP)
    if replicas == 1:
        return QColor(theme.COVERAGE_THIN)
    return QColor(theme.COVERAGE_OK).darker(100 + min(replicas - 2, 4) * 8)


def gap_ranges(coverage: Sequence[int]) -> list[tuple[int, int]]:
    """Runs of blocks nobody serves, as [start, end) pairs."""
    runs, start = [], None
    for block, replicas in enumerate([*coverage, 1]):
        if replicas <= 0 and start is None:
            start = block
        elif replicas > 0 and start is not None:
            runs.append((start, block))
            start = None
    return runs


def coverage_summary(coverage: Sequence[int]) -> str:
    """Plain words under the strip: where the gaps are, or that every block is served."""
    if not coverage:
        return "The swarm has not reported its blocks yet."
    gaps = gap_ranges(coverage)
    if not gaps:
        thin = sum(1 for c in coverage if c == 1)
        if thin:
            return f"Every block has a server; {thin} of {len(coverage)} have only one."
        return "Every block has at least two servers."
    missing = sum(end - start for start, end in gaps)
    where = ", ".join(block_range(s, e) for s, e in gaps)
    noun = "block has" if missing == 1 else "blocks have"
    return f"{missing} {noun} no server ({where}): the swarm cannot answer until someone hosts them."


class CoverageStrip(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._coverage: tuple[int, ...] = ()
        self._hosted = (0, 0)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(200)

    def set_coverage(self, coverage: Sequence[int], hosted_start_block: int = 0, hosted_end_block: int = 0) -> None:
        self._coverage = tuple(coverage)
        self._hosted = (hosted_start_block, hosted_end_block)
        self.setAccessibleDescription(coverage_summary(self._coverage))
        self.update()

    @property
    def coverage(self) -> tuple[int, ...]:
        return self._coverage

    def sizeHint(self) -> QSize:
        return QSize(480, STRIP_HEIGHT_PX + MARK_HEIGHT_PX + 4)

    def _cell_rect(self, block: int) -> QRectF:
        count = max(len(self._coverage), 1)
        width = (self.width() - CELL_GAP_PX * (count - 1)) / count
        return QRectF(block * (width + CELL_GAP_PX), 0, max(width, 1.0), STRIP_HEIGHT_PX)

    def block_at(self, x: float) -> int | None:
        for block in range(len(self._coverage)):
            rect = self._cell_rect(block)
            if rect.left() <= x < rect.right() + CELL_GAP_PX:
                return block
        return None

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if not self._coverage:
            painter.setPen(QColor(theme.MUTED_TEXT))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No coverage reported yet")
            return
        painter.setPen(Qt.PenStyle.NoPen)
        for block, replicas in enumerate(self._coverage):
            painter.setBrush(coverage_color(replicas))
            painter.drawRoundedRect(self._cell_rect(block), 2, 2)
        start, end = self._hosted
        if end > start:
            left = self._cell_rect(start).left()
            right = self._cell_rect(min(end, len(self._coverage)) - 1).right()
            painter.setBrush(QColor(theme.ACCENT))
            painter.drawRoundedRect(QRectF(left, STRIP_HEIGHT_PX + 3, right - left, MARK_HEIGHT_PX), 2, 2)
        if self._cell_rect(0).width() >= 16:  # room for the counts themselves
            font = QFont(self.font())
            font.setPointSizeF(font.pointSizeF() * 0.8)
            painter.setFont(font)
            painter.setPen(QPen(QColor("#ffffff")))
            for block, replicas in enumerate(self._coverage):
                painter.drawText(self._cell_rect(block), Qt.AlignmentFlag.AlignCenter, str(replicas))

    def mouseMoveEvent(self, event) -> None:
        block = self.block_at(event.position().x())
        if block is None:
            QToolTip.hideText()
            return
        replicas = self._coverage[block]
        servers = "no server" if replicas == 0 else ("1 server" if replicas == 1 else f"{replicas} servers")
        mine = " (this PC hosts it)" if self._hosted[0] <= block < self._hosted[1] else ""
        QToolTip.showText(event.globalPosition().toPoint(), f"Block {block}: {servers}{mine}", self)
