"""Dashboard: what this PC gives the swarm (blocks, tokens, sessions, uptime, traffic, memory, speed), the swarm's
health (coverage strip, members with when they were last seen), "you gave / you used", the last two weeks as
charts, a progress bar while the model downloads and loads, and why the node chose its number of blocks.

Honest numbers: "gave" counts only tokens served for other members (never this PC's own chats); the speed is the
tokens this PC's blocks processed per second over the last minute; memory is what the node process really holds,
with what its blocks take. It reads only what the node reports (stats, sizing, state, progress and history
events), so it never blocks; a failed node shows its reason, the log tail and a Try again button.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from potluck.app import theme
from potluck.app.coverage_strip import CoverageStrip, coverage_summary
from potluck.app.formatting import block_range, format_bytes, format_count, format_duration, status_line
from potluck.app.history_view import HistorySection
from potluck.app.icons import IconSet
from potluck.app.load_progress import LoadProgress
from potluck.app.members_table import MembersTable
from potluck.app.node_process import NodeProcess
from potluck.app.stat_card import StatCard, card_frame, label, set_role
from potluck.app.ui_state import UiKey, restore_geometry, save_geometry
from potluck.core.protocol import NodeState, Sizing, Stats

WAITING_TEXT = "Waiting for the node's first report…"


def gave_used_text(stats: Stats) -> tuple[str, str]:
    """Tokens served for other members / tokens this PC's chats used, and how they compare (no ratio by zero)."""
    gave, used = stats.tokens_for_others, stats.tokens_used
    value = f"{format_count(gave)} / {format_count(used)}"
    if not gave and not used:
        sub = "tokens served for friends / used by your chats"
    elif not used:
        sub = "all of it for friends so far"
    elif not gave:
        sub = "nothing served for friends yet"
    elif gave >= used:
        sub = f"you gave {gave / used:.1f}× what you used"
    else:
        sub = f"you used {used / gave:.1f}× what you gave"
    return value, sub


def memory_text(stats: Stats) -> str:
    """The line under the memory figure: what of it the blocks and the chat hold, and what is still free."""
    parts = [f"blocks {format_bytes(stats.memory_blocks_bytes)}" if stats.memory_blocks_bytes else "",
             f"chat {format_bytes(stats.memory_chat_bytes)}" if stats.memory_chat_bytes else "",
             f"{format_bytes(stats.memory_free_bytes)} free"]
    return " · ".join(p for p in parts if p)


def speed_text(stats: Stats) -> tuple[str, str, str]:
    """(figure, line under it, tooltip) for the speed card: the last minute's rate, and what one pass can do."""
    tooltip = ("Tokens this PC's blocks processed per second, averaged over the last minute (for friends and for "
               "your own chats).")
    if stats.throughput_tokens_per_second:
        tooltip += (f" One pass through this PC's blocks takes about {1 / stats.throughput_tokens_per_second:.3f} s: "
                    f"up to {stats.throughput_tokens_per_second:.0f} tokens per second for one conversation.")
    return f"{stats.served_tokens_per_second:.1f}", "tokens per second, last minute", tooltip


def sizing_numbers_text(sizing: Sizing) -> str:
    parts = []
    for name, value in sizing.numbers.items():
        words = name.replace("_bytes", "").replace("_", " ")
        shown = format_bytes(value) if name.endswith("_bytes") and isinstance(value, (int, float)) else str(value)
        parts.append(f"{words}: {shown}")
    return " · ".join(parts)


class Dashboard(QWidget):
    def __init__(
        self,
        node: NodeProcess,
        icons: IconSet,
        settings: QSettings,
        open_chat: Callable[[], None] | None = None,
        invite_friend: Callable[[], None] | None = None,
        open_settings: Callable[[], None] | None = None,
        parent: QWidget | None = None,
        open_swarm: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self._node = node
        self._icons = icons
        self._settings = settings
        self.setWindowTitle("Potluck — Dashboard")
        self.setWindowIcon(icons.app_icon())
        self.resize(940, 760)
        restore_geometry(settings, UiKey.DASHBOARD_GEOMETRY, self)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the content follows the width
        outer.addWidget(scroll)
        content = QWidget()
        scroll.setWidget(content)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(theme.MARGIN_PX, theme.MARGIN_PX, theme.MARGIN_PX, theme.MARGIN_PX)
        layout.setSpacing(theme.SPACING_PX + 4)

        layout.addLayout(self._build_header(open_chat, invite_friend, open_settings, open_swarm))
        layout.addWidget(self._build_failure_panel())
        self.load_progress = LoadProgress(node)
        layout.addWidget(self.load_progress)
        layout.addLayout(self._build_cards())
        layout.addWidget(self._build_swarm_section())
        self.history = HistorySection(node)
        layout.addWidget(self.history)
        layout.addWidget(self._build_sizing_section())
        layout.addStretch(1)

        node.state_changed.connect(self._on_state)
        node.stats_received.connect(self.show_stats)
        node.sizing_received.connect(self.show_sizing)
        self._on_state(node.state)
        if node.last_stats is not None:
            self.show_stats(node.last_stats)
        if node.last_sizing is not None:
            self.show_sizing(node.last_sizing)

    # ------------------------------------------------------------------ building

    def _build_header(self, open_chat, invite_friend, open_settings, open_swarm=None) -> QHBoxLayout:
        header = QHBoxLayout()
        header.setSpacing(theme.SPACING_PX)
        self.state_icon = label()
        self.state_icon.setFixedSize(40, 40)
        header.addWidget(self.state_icon)
        titles = QVBoxLayout()
        titles.setSpacing(2)
        titles.addWidget(label("This PC's contribution", "title"))
        self.status_label = label("", "muted")
        titles.addWidget(self.status_label)
        header.addLayout(titles, 1)
        self.serve_button = QPushButton("Pause serving")
        self.serve_button.setObjectName("primary")
        self.serve_button.clicked.connect(self._toggle_serving)
        header.addWidget(self.serve_button)
        for text, callback in (("Chat", open_chat), ("Swarm", open_swarm), ("Invite a friend", invite_friend),
                               ("Settings", open_settings)):
            if callback is not None:
                button = QPushButton(text)
                button.clicked.connect(callback)
                header.addWidget(button)
        return header

    def _build_failure_panel(self) -> QWidget:
        self.failure_panel, panel = card_frame()
        self.failure_label = label("", "error", wrap=True)
        panel.addWidget(self.failure_label)
        row = QHBoxLayout()
        self.log_button = QPushButton("Show log")
        self.log_button.setCheckable(True)
        self.retry_button = QPushButton("Try again")
        self.retry_button.setObjectName("primary")
        self.retry_button.clicked.connect(self._node.start)
        row.addWidget(self.log_button)
        row.addStretch(1)
        row.addWidget(self.retry_button)
        panel.addLayout(row)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMinimumHeight(180)
        self.log_view.setVisible(False)
        self.log_button.toggled.connect(self._show_log)
        panel.addWidget(self.log_view)
        self.failure_panel.setVisible(False)
        return self.failure_panel

    def _build_cards(self) -> QGridLayout:
        grid = QGridLayout()
        grid.setSpacing(theme.SPACING_PX)
        titles = {
            "blocks": "Blocks hosted", "tokens": "Tokens served for friends", "sessions": "Conversations served",
            "uptime": "Time serving", "traffic": "Sent / received", "memory": "Memory held",
            "throughput": "Speed", "gave_used": "You gave / you used",
        }
        self.cards = {key: StatCard(title) for key, title in titles.items()}
        for index, card in enumerate(self.cards.values()):
            grid.addWidget(card, index // 4, index % 4)
        for column in range(4):
            grid.setColumnStretch(column, 1)
        return grid

    def _build_swarm_section(self) -> QWidget:
        frame, section = card_frame()
        section.setSpacing(theme.SPACING_PX)
        section.addWidget(label("The swarm", "title"))
        self.coverage_strip = CoverageStrip()
        section.addWidget(self.coverage_strip)
        legend = label(
            f"<span style='color:{theme.COVERAGE_GAP}'>■</span> no server &nbsp;&nbsp;"
            f"<span style='color:{theme.COVERAGE_THIN}'>■</span> one server &nbsp;&nbsp;"
            f"<span style='color:{theme.COVERAGE_OK}'>■</span> two or more &nbsp;&nbsp;"
            f"<span style='color:{theme.ACCENT}'>▬</span> this PC's blocks", "muted")
        section.addWidget(legend)
        self.coverage_label = label(WAITING_TEXT, wrap=True)
        section.addWidget(self.coverage_label)
        self.members = MembersTable()
        section.addWidget(self.members)
        return frame

    def _build_sizing_section(self) -> QWidget:
        frame, section = card_frame()
        section.addWidget(label("Why this many blocks", "title"))
        self.sizing_label = label("The node explains its choice once it has measured this PC's free memory.", "muted", wrap=True)
        self.sizing_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        section.addWidget(self.sizing_label)
        self.sizing_numbers = label("", "muted", wrap=True)
        self.sizing_numbers.setVisible(False)
        section.addWidget(self.sizing_numbers)
        return frame

    # ------------------------------------------------------------------ updates

    def show_stats(self, stats: Stats) -> None:
        c = self.cards
        hosted = stats.end_block > stats.start_block
        c["blocks"].set_value(block_range(stats.start_block, stats.end_block) if hosted else "None",
                              f"of {stats.total_blocks} blocks" if stats.total_blocks else "")
        c["tokens"].set_value(format_count(stats.tokens_for_others),
                              f"{format_count(stats.tokens_served)} in all, with your own chats")
        c["sessions"].set_value(format_count(stats.sessions_served), f"{stats.active_sessions} running now")
        c["uptime"].set_value(format_duration(stats.uptime_seconds))
        c["traffic"].set_value(f"{format_bytes(stats.bytes_up)} / {format_bytes(stats.bytes_down)}",
                               f"{format_bytes(stats.month_bytes_up)} sent this month")
        c["memory"].set_value(format_bytes(stats.memory_used_bytes), memory_text(stats))
        c["memory"].setToolTip("What the node process holds in RAM, and of it what the hosted blocks' weights and the "
                               "chat's own model parts (loaded by the first chat, kept while paused) take.")
        figure, sub, tooltip = speed_text(stats)
        c["throughput"].set_value(figure, sub)
        c["throughput"].setToolTip(tooltip)
        c["gave_used"].set_value(*gave_used_text(stats))
        self.coverage_strip.set_coverage(stats.coverage, stats.start_block, stats.end_block)
        self.coverage_label.setText(coverage_summary(stats.coverage))
        self.members.set_members(stats.members, stats.peer_id)
        self._refresh_status()

    def show_sizing(self, sizing: Sizing) -> None:
        self.sizing_label.setText(sizing.explanation)
        set_role(self.sizing_label, "")
        numbers = sizing_numbers_text(sizing)
        self.sizing_numbers.setText(numbers)
        self.sizing_numbers.setVisible(bool(numbers))

    def _on_state(self, state: NodeState) -> None:
        self.state_icon.setPixmap(self._icons.for_node_state(state).pixmap(40, 40))
        failed = state is NodeState.FAILED
        self.failure_panel.setVisible(failed)
        if failed:
            self.failure_label.setText(self._node.detail or "The node stopped because of an error.")
            self._show_log(self.log_button.isChecked())
        self.serve_button.setText("Resume serving" if state in (NodeState.PAUSED, NodeState.STOPPED, NodeState.FAILED)
                                  else "Pause serving")
        self.serve_button.setEnabled(state in (NodeState.SERVING, NodeState.STARTING, NodeState.PAUSED, NodeState.STOPPED))
        if not self._node.is_running and state is not NodeState.STARTING:
            self.cards["throughput"].set_value("—", "not serving")
        self._refresh_status()

    def _refresh_status(self) -> None:
        self.status_label.setText(status_line(self._node.state, self._node.last_stats, self._node.detail))

    def _toggle_serving(self) -> None:
        if self._node.state in (NodeState.SERVING, NodeState.STARTING):
            self._node.pause()
        else:
            self._node.resume()

    def _show_log(self, visible: bool) -> None:
        self.log_view.setVisible(visible)
        if visible:
            self.log_view.setPlainText("\n".join(self._node.log_tail()))
            self.log_view.verticalScrollBar().setValue(self.log_view.verticalScrollBar().maximum())

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._node.is_running and self._node.hello is not None:
            self._node.refresh()

    def closeEvent(self, event) -> None:
        save_geometry(self._settings, UiKey.DASHBOARD_GEOMETRY, self)
        super().closeEvent(event)
