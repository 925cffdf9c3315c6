"""HistorySection: the dashboard's charts of the last two weeks, from the node's `history` events (kept across
restarts in the node's SQLite file, core/node/history.py): tokens served for friends, time serving, data sent,
and gave / used side by side. "Gave" counts only work done for other members.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from PySide6.QtWidgets import QGridLayout, QWidget

from potluck.app import theme
from potluck.app.charts import DailyChart, Series, daily_series
from potluck.app.formatting import format_count
from potluck.app.node_process import NodeProcess
from potluck.app.stat_card import card_frame, label
from potluck.core.numbers import format_bytes
from potluck.core.protocol import History, HistoryDay

CHART_DAYS = 14
GAVE_COLOR = theme.ACCENT
USED_COLOR = "#e0a458"
EMPTY_TEXT = "Nothing recorded yet: the charts fill in as this PC serves and chats, day by day."


def _hours(value: float) -> str:
    if value >= 10:
        return f"{value:.0f} h"
    return f"{value:.1f} h" if value else "0 h"


MIB = 2**20


def history_charts(days: Sequence[HistoryDay], today: dt.date,
                   count: int = CHART_DAYS) -> dict[str, tuple[list[str], list[Series]]]:
    """What each chart shows: labels for the last `count` days and its series (pure, for tests)."""
    def by_day(pick: Callable[[HistoryDay], float]) -> dict[str, float]:
        return {d.day: pick(d) for d in days}

    labels, gave = daily_series(by_day(lambda d: d.tokens_for_others), today, count)
    _, used = daily_series(by_day(lambda d: d.tokens_used), today, count)
    _, hours = daily_series(by_day(lambda d: d.serving_seconds / 3600), today, count)
    _, sent = daily_series(by_day(lambda d: d.bytes_up), today, count)
    return {
        "given": (labels, [Series("for friends", GAVE_COLOR, tuple(gave))]),
        "time": (labels, [Series("serving", theme.STATE_COLORS["serving"], tuple(hours))]),
        "sent": (labels, [Series("sent", "#3e7cb1", tuple(sent))]),
        "gave_used": (labels, [Series("you gave", GAVE_COLOR, tuple(gave)), Series("you used", USED_COLOR, tuple(used))]),
    }


class HistorySection(QWidget):
    def __init__(self, node: NodeProcess, today: Callable[[], dt.date] = dt.date.today,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._today = today
        self.frame, section = card_frame(self)
        outer = QGridLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.frame)
        section.addWidget(label(f"The last {CHART_DAYS} days", "title"))
        self.empty_label = label(EMPTY_TEXT, "muted", wrap=True)
        section.addWidget(self.empty_label)
        grid = QGridLayout()
        grid.setSpacing(theme.SPACING_PX)
        count = lambda value: format_count(int(value))  # noqa: E731
        self.charts = {
            "given": DailyChart("Tokens served for friends", count, minimum_top=10),
            "time": DailyChart("Time serving", _hours, minimum_top=1.0),  # hours
            "sent": DailyChart("Data sent", format_bytes, minimum_top=MIB),
            "gave_used": DailyChart("You gave / you used (tokens)", count, minimum_top=10),
        }
        for index, chart in enumerate(self.charts.values()):
            grid.addWidget(chart, index // 2, index % 2)
        section.addLayout(grid)
        node.history_received.connect(self.show_history)
        self.show_history(node.last_history or History())

    def show_history(self, history: History) -> None:
        for key, (labels, series) in history_charts(history.days, self._today()).items():
            self.charts[key].set_data(labels, series)
        self.empty_label.setVisible(not any(d.tokens_served or d.tokens_used or d.serving_seconds for d in history.days))
