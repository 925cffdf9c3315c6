"""RulesPanel: Settings' "When this PC serves" (the serving rules of core/node/rules.py) and "Apps on this PC"
(the OpenAI-compatible API the node offers on 127.0.0.1).

The rules travel as their JSON form (`rules_to_json`), which AppConfig stores and the node reads; the panel
edits one weekly window (days and a time span, which may run past midnight) and keeps any other windows a
hand-edited settings file has. `problem()` says in words what must be corrected before saving.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QTime
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QSpinBox,
    QTimeEdit,
    QVBoxLayout,
    QWidget,
)

from potluck.app import theme
from potluck.app.stat_card import label
from potluck.core.node.rules import (
    DAY_NAMES,
    RulesError,
    ServingRules,
    Window,
    parse_rules,
    rules_to_json,
    schedule_words,
)

GIB = 2**30
ANY_TIME_TEXT = "whether I use this PC or not"
NO_CAP_TEXT = "No cap"
ALL_CORES_TEXT = "All cores"


def _time(minute: int) -> QTime:
    return QTime(min(minute, 1439) // 60, min(minute, 1439) % 60) if minute < 1440 else QTime(0, 0)


class RulesPanel(QFrame):
    def __init__(self, rules: dict, api_enabled: bool = False, api_port: int = 8000,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.CARD_PADDING_PX, theme.CARD_PADDING_PX, theme.CARD_PADDING_PX,
                                  theme.CARD_PADDING_PX)
        layout.addWidget(label("When this PC serves", "title"))
        form = QFormLayout()
        form.setSpacing(8)
        self.idle_minutes = QSpinBox()
        self.idle_minutes.setRange(0, 24 * 60)
        self.idle_minutes.setPrefix("only after ")
        self.idle_minutes.setSuffix(" min without input")
        self.idle_minutes.setSpecialValueText(ANY_TIME_TEXT)
        form.addRow("Serve", self.idle_minutes)
        self.on_battery = QCheckBox("Also while on battery")
        form.addRow("", self.on_battery)
        self.scheduled = QCheckBox("Only at these times")
        form.addRow("Schedule", self.scheduled)
        days_row = QHBoxLayout()
        self.days = [QCheckBox(name[:3]) for name in DAY_NAMES]
        for box in self.days:
            days_row.addWidget(box)
        days_row.addStretch(1)
        form.addRow("", days_row)
        times_row = QHBoxLayout()
        self.start_time, self.end_time = QTimeEdit(), QTimeEdit()
        for edit in (self.start_time, self.end_time):
            edit.setDisplayFormat("HH:mm")
        times_row.addWidget(label("from"))
        times_row.addWidget(self.start_time)
        times_row.addWidget(label("to"))
        times_row.addWidget(self.end_time)
        times_row.addStretch(1)
        form.addRow("", times_row)
        self.schedule_words = label("", "muted", wrap=True)
        form.addRow("", self.schedule_words)
        self.upload_cap = QDoubleSpinBox()
        self.upload_cap.setRange(0, 1_000_000)
        self.upload_cap.setDecimals(0)
        self.upload_cap.setSuffix(" GiB a month")
        self.upload_cap.setSpecialValueText(NO_CAP_TEXT)
        form.addRow("Upload cap", self.upload_cap)
        self.cpu_threads = QSpinBox()
        self.cpu_threads.setRange(0, max(1, os.cpu_count() or 1))
        self.cpu_threads.setSpecialValueText(ALL_CORES_TEXT)
        self.cpu_threads.valueChanged.connect(lambda n: self.cpu_threads.setSuffix(" thread" if n == 1 else " threads"))
        form.addRow("CPU for blocks", self.cpu_threads)
        layout.addLayout(form)
        layout.addWidget(label("When a rule says no, this PC finishes its conversations first, then pauses; the tray "
                               "says why and until when. An end time at or before the start runs past midnight.",
                               "muted", wrap=True))
        layout.addSpacing(6)
        layout.addWidget(label("Apps on this PC", "title"))
        self.api_enabled = QCheckBox("Let apps on this PC use the swarm (an OpenAI-style API)")
        api_row = QHBoxLayout()
        api_row.addWidget(self.api_enabled)
        api_row.addStretch(1)
        api_row.addWidget(label("port"))
        self.api_port = QSpinBox()
        self.api_port.setRange(1, 65535)
        api_row.addWidget(self.api_port)
        layout.addLayout(api_row)
        self.api_words = label("", "muted", wrap=True)
        layout.addWidget(self.api_words)
        self._other_windows: tuple[Window, ...] = ()
        for box in (self.scheduled, *self.days):
            box.toggled.connect(self._update)
        for edit in (self.start_time, self.end_time):
            edit.timeChanged.connect(self._update)
        self.api_enabled.toggled.connect(self._update)
        self.api_port.valueChanged.connect(self._update)
        self.set_values(rules, api_enabled, api_port)

    def set_values(self, rules: dict, api_enabled: bool, api_port: int) -> None:
        try:
            parsed = parse_rules(rules)
        except RulesError:
            parsed = ServingRules()
        self.idle_minutes.setValue(parsed.idle_minutes)
        self.on_battery.setChecked(parsed.serve_on_battery)
        first = parsed.schedule[0] if parsed.schedule else Window(tuple(range(5)), 18 * 60, 8 * 60)
        self._other_windows = parsed.schedule[1:]
        self.scheduled.setChecked(bool(parsed.schedule))
        for index, box in enumerate(self.days):
            box.setChecked(index in first.days)
        self.start_time.setTime(_time(first.start_minute))
        self.end_time.setTime(_time(first.end_minute))
        self.upload_cap.setValue(round(parsed.monthly_upload_cap_bytes / GIB))
        self.cpu_threads.setValue(min(parsed.cpu_threads, self.cpu_threads.maximum()))
        self.api_enabled.setChecked(api_enabled)
        self.api_port.setValue(api_port)
        self._update()

    def _window(self) -> Window | None:
        days = tuple(i for i, box in enumerate(self.days) if box.isChecked())
        if not days:
            return None
        start = self.start_time.time().hour() * 60 + self.start_time.time().minute()
        end = self.end_time.time().hour() * 60 + self.end_time.time().minute()
        return Window(days, start, end)

    def problem(self) -> str:
        if self.scheduled.isChecked() and self._window() is None:
            return "Choose at least one day for the schedule, or untick Only at these times."
        return ""

    def rules(self) -> dict:
        """The rules as their JSON form (call `problem()` first)."""
        window = self._window() if self.scheduled.isChecked() else None
        schedule = ((window,) if window is not None else ()) + (self._other_windows if self.scheduled.isChecked()
                                                                else ())
        return rules_to_json(ServingRules(
            idle_minutes=self.idle_minutes.value(), serve_on_battery=self.on_battery.isChecked(), schedule=schedule,
            monthly_upload_cap_bytes=int(self.upload_cap.value()) * GIB, cpu_threads=self.cpu_threads.value()))

    def _update(self) -> None:
        on = self.scheduled.isChecked()
        for widget in (*self.days, self.start_time, self.end_time):
            widget.setEnabled(on)
        if not on:
            self.schedule_words.setText("Any day, any time.")
        elif self._window() is None:
            self.schedule_words.setText("No day chosen.")
        else:
            self.schedule_words.setText("Serves " + schedule_words((self._window(), *self._other_windows)) + ".")
        self.api_port.setEnabled(self.api_enabled.isChecked())
        self.api_words.setText(f"Apps reach it at http://127.0.0.1:{self.api_port.value()}/v1 (this PC only)."
                               if self.api_enabled.isChecked() else "Off: only Potluck's own chat uses the swarm.")
