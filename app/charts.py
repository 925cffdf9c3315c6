"""DailyChart: bars per day drawn with QPainter (one or two series side by side), for the dashboard's history.

Pure helpers fill the days with nothing recorded (`daily_series`) and pick a round top for the axis (`nice_top`);
the widget only paints what it is given.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from potluck.app import theme


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    values: tuple[float, ...]  # one per day, oldest first


def daily_series(days: dict[str, float], today: dt.date, count: int) -> tuple[list[str], list[float]]:
    """The last `count` days up to `today` as (labels 'Mar 4', values), days with no record as 0."""
    dates = [today - dt.timedelta(days=count - 1 - i) for i in range(count)]
    return [f"{d.strftime('%b')} {d.day}" for d in dates], [float(days.get(d.isoformat(), 0.0)) for d in dates]


def nice_top(value: float) -> float:
    """A round number at or above `value` for the top of the axis: 1, 2, 2.5, 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-12:
            return step * power
    return 10 * power


class DailyChart(QWidget):
    def __init__(self, title: str, formatter: Callable[[float], str], minimum_top: float = 1.0,
                 parent: QWidget | None = None) -> None:
        """minimum_top: the axis never ends below this (a day with one second of serving is not a full bar)."""
        super().__init__(parent)
        self.title = title
        self.formatter = formatter
        self.minimum_top = minimum_top
        self.labels: list[str] = []
        self.series: list[Series] = []
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(380, 170)

    def set_data(self, labels: Sequence[str], series: Sequence[Series]) -> None:
        self.labels, self.series = list(labels), list(series)
        total = sum(sum(s.values) for s in series)
        self.setToolTip(f"{self.title}: " + ", ".join(f"{s.name} {self.formatter(sum(s.values))}" for s in series)
                        if total else f"{self.title}: nothing yet")
        self.update()

    @property
    def top(self) -> float:
        return max(self.minimum_top, nice_top(max((v for s in self.series for v in s.values), default=0.0)))

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        width, height = self.width(), self.height()
        painter.setPen(QColor(theme.TEXT))
        title_font = QFont(font)
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.drawText(QRectF(0, 0, width, metrics.height() + 2), Qt.AlignmentFlag.AlignLeft, self.title)
        painter.setFont(font)
        legend_x = width
        for s in reversed(self.series if len(self.series) > 1 else []):  # a legend only when there is a choice
            text_width = metrics.horizontalAdvance(s.name)
            legend_x -= text_width + 22
            painter.fillRect(QRectF(legend_x, 4, 10, 10), QColor(s.color))
            painter.setPen(QColor(theme.MUTED_TEXT))
            painter.drawText(QRectF(legend_x + 14, 0, text_width + 4, metrics.height() + 2),
                             Qt.AlignmentFlag.AlignLeft, s.name)
        top_label = self.formatter(self.top)
        axis_width = metrics.horizontalAdvance(top_label) + 6
        plot = QRectF(axis_width, metrics.height() + 8, width - axis_width - 2,
                      height - 2 * metrics.height() - 14)
        painter.setPen(QPen(QColor(theme.BORDER), 1))
        for fraction in (0.0, 0.5, 1.0):
            y = plot.bottom() - fraction * plot.height()
            painter.drawLine(int(plot.left()), int(y), int(plot.right()), int(y))
        painter.setPen(QColor(theme.MUTED_TEXT))
        painter.drawText(QRectF(0, plot.top() - metrics.height() / 2, axis_width - 4, metrics.height()),
                         Qt.AlignmentFlag.AlignRight, top_label)
        painter.drawText(QRectF(0, plot.bottom() - metrics.height() / 2, axis_width - 4, metrics.height()),
                         Qt.AlignmentFlag.AlignRight, "0")
        count = len(self.labels)
        if not count or not self.series:
            return
        slot = plot.width() / count
        bar_width = max(1.0, slot * 0.7 / len(self.series))
        top = self.top
        for day in range(count):
            for index, s in enumerate(self.series):
                value = s.values[day] if day < len(s.values) else 0.0
                bar_height = plot.height() * min(1.0, value / top)
                x = plot.left() + day * slot + slot * 0.15 + index * bar_width
                if bar_height > 0:
                    painter.fillRect(QRectF(x, plot.bottom() - bar_height, bar_width, bar_height), QColor(s.color))
        every = max(1, math.ceil(count / max(1, int(plot.width() // (metrics.horizontalAdvance("Mar 30") + 8)))))
        for day in range(count - 1, -1, -every):  # today always labelled, then every few days back
            x = plot.left() + day * slot
            painter.drawText(QRectF(x - slot * 2, plot.bottom() + 2, slot * 5, metrics.height()),
                             Qt.AlignmentFlag.AlignHCenter, self.labels[day])
