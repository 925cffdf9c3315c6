"""LoadProgress: a real progress bar for downloading and opening the model (the node's `progress` events), shown
while the node starts, in the wizard and on the dashboard. Hidden once the node serves, pauses or fails.
"""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar, QVBoxLayout, QWidget

from potluck.app.node_process import NodeProcess
from potluck.app.stat_card import label
from potluck.core.numbers import format_bytes
from potluck.core.protocol import NodeState, Progress

BAR_STEPS = 1000


def progress_words(progress: Progress) -> str:
    """'Loading blocks: 3 of 12 (1.9 GiB of 7.8 GiB)', 'Downloading model-0002.safetensors: 0.41 GiB of 4.9 GiB'."""
    if progress.stage == "download":
        name = progress.text.removeprefix("Downloading ").strip() or "the model"
        sizes = (f"{format_bytes(progress.done_bytes)} of {format_bytes(progress.total_bytes)}"
                 if progress.total_bytes else format_bytes(progress.done_bytes))
        return f"Downloading {name}: {sizes}"
    sizes = f" ({format_bytes(progress.done_bytes)} of {format_bytes(progress.total_bytes)})" \
        if progress.total_bytes else ""
    return f"Loading blocks: {progress.done_blocks} of {progress.total_blocks}{sizes}"


class LoadProgress(QWidget):
    def __init__(self, node: NodeProcess, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._node = node
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.bar = QProgressBar()
        self.bar.setRange(0, BAR_STEPS)
        self.bar.setTextVisible(True)
        layout.addWidget(self.bar)
        self.words = label("", "muted", wrap=True)
        layout.addWidget(self.words)
        self.setVisible(False)
        node.progress_received.connect(self.show_progress)
        node.state_changed.connect(self._on_state)

    def show_progress(self, progress: Progress) -> None:
        fraction = progress.fraction
        if fraction is None:
            self.bar.setRange(0, 0)  # busy: the total is not known yet
        else:
            self.bar.setRange(0, BAR_STEPS)
            self.bar.setValue(int(round(fraction * BAR_STEPS)))
            self.bar.setFormat(f"{fraction * 100:.0f}%")
        self.words.setText(progress_words(progress))
        self.setVisible(self._node.state is NodeState.STARTING)

    def _on_state(self, state: NodeState) -> None:
        if state is not NodeState.STARTING:
            self.setVisible(False)
