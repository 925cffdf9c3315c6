"""Icons per state: drawn files from resources/icons when they exist, otherwise painted here, so the app always
has an icon. Files are named potluck-<state>-<size>.png (state: serving, paused, draining, starting, error) and
potluck-<size>.png for the app itself.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

from potluck.app import theme
from potluck.core.protocol import NodeState

PAINTED_SIZES_PX = (16, 22, 24, 32, 48, 64, 128, 256)


class IconState(str, enum.Enum):
    SERVING = "serving"
    PAUSED = "paused"
    DRAINING = "draining"
    STARTING = "starting"
    ERROR = "error"


def icon_state_for(state: NodeState) -> IconState:
    return {
        NodeState.SERVING: IconState.SERVING,
        NodeState.PAUSED: IconState.PAUSED,
        NodeState.STOPPED: IconState.PAUSED,
        NodeState.DRAINING: IconState.DRAINING,
        NodeState.STARTING: IconState.STARTING,
        NodeState.STOPPING: IconState.STARTING,
        NodeState.FAILED: IconState.ERROR,
    }[state]


def icon_files(icons_dir: Path, stem: str) -> dict[int, Path]:
    """{size_px: file} for files named <stem>-<size>.png in icons_dir."""
    pattern = re.compile(re.escape(stem) + r"-(\d+)\.png$")
    found = {}
    if icons_dir.is_dir():
        for path in icons_dir.iterdir():
            match = pattern.fullmatch(path.name)
            if match:
                found[int(match.group(1))] = path
    return found


class IconSet:
    """Loads each icon once. `icons_dir` is resources/icons (see app.paths.resources_dir)."""

    def __init__(self, icons_dir: Path) -> None:
        self._icons_dir = icons_dir
        self._cache: dict[str, QIcon] = {}
        self.painted: set[str] = set()  # which icons had no files and were painted

    def state_icon(self, state: IconState) -> QIcon:
        return self._load(f"potluck-{state.value}", state)

    def for_node_state(self, state: NodeState) -> QIcon:
        return self.state_icon(icon_state_for(state))

    def app_icon(self) -> QIcon:
        return self._load("potluck", None)

    def _load(self, stem: str, state: IconState | None) -> QIcon:
        if stem in self._cache:
            return self._cache[stem]
        icon = QIcon()
        for _size, path in sorted(icon_files(self._icons_dir, stem).items()):
            icon.addFile(str(path))
        if icon.isNull():
            self.painted.add(stem)
            for size in PAINTED_SIZES_PX:
                icon.addPixmap(paint_icon(size, state))
        self._cache[stem] = icon
        return icon


def paint_icon(size_px: int, state: IconState | None) -> QPixmap:
    """A pot (the swarm's shared dish) in the state's colour, with a small white sign for the state."""
    color = QColor(theme.STATE_COLORS[state.value] if state else theme.ACCENT)
    pixmap = QPixmap(size_px, size_px)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.scale(size_px / 64, size_px / 64)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(color.lighter(135)))
    for x, y in ((20, 12), (32, 7), (44, 12)):  # three friends' contributions above the pot
        painter.drawEllipse(QPointF(x, y), 5.5, 5.5)
    bowl = QPainterPath()
    bowl.moveTo(6, 24)
    bowl.lineTo(58, 24)
    bowl.cubicTo(58, 46, 48, 58, 32, 58)
    bowl.cubicTo(16, 58, 6, 46, 6, 24)
    painter.setBrush(QBrush(color))
    painter.drawPath(bowl)
    painter.setBrush(QBrush(color.darker(125)))
    painter.drawRoundedRect(QRectF(2, 20, 60, 8), 4, 4)
    _paint_sign(painter, state)
    painter.end()
    return pixmap


def _paint_sign(painter: QPainter, state: IconState | None) -> None:
    white = QColor("#ffffff")
    painter.setBrush(QBrush(white))
    painter.setPen(Qt.PenStyle.NoPen)
    if state is IconState.PAUSED:
        painter.drawRoundedRect(QRectF(24, 33, 6, 16), 2, 2)
        painter.drawRoundedRect(QRectF(34, 33, 6, 16), 2, 2)
    elif state is IconState.DRAINING:
        arrow = QPainterPath()
        arrow.moveTo(29, 32)
        arrow.lineTo(35, 32)
        arrow.lineTo(35, 41)
        arrow.lineTo(40, 41)
        arrow.lineTo(32, 51)
        arrow.lineTo(24, 41)
        arrow.lineTo(29, 41)
        arrow.closeSubpath()
        painter.drawPath(arrow)
    elif state is IconState.STARTING:
        for x in (22, 32, 42):
            painter.drawEllipse(QPointF(x, 41), 3.5, 3.5)
    elif state is IconState.ERROR:
        painter.drawRoundedRect(QRectF(29, 31, 6, 13), 2, 2)
        painter.drawEllipse(QPointF(32, 50), 3.5, 3.5)
    elif state is IconState.SERVING:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(white, 5, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
        painter.drawPolyline([QPointF(23, 41), QPointF(30, 48), QPointF(42, 35)])
