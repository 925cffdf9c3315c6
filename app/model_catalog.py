"""The "start a swarm" page's model list: a short list of good models with their size at each precision, a
precision choice, and a fit line for this PC ("at int4 it needs about 40 GiB; this PC has 14 GiB free: about 3 PCs
like this one"), plus "another model" for any hub id, folder or .gguf file.

The short list's sizes come with the catalog (core/model/catalog.py, computed from each model's config ahead of
time), so the page shows them at once and offline. Another model is sized by the engine in a separate process
(`potluck models --model … --json`), off the GUI thread: the GUI never loads torch or transformers.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from potluck.app.background import run_in_background
from potluck.app.model_choice import ModelPicker
from potluck.app.stat_card import label, set_role
from potluck.app.words import capitalised, sentence
from potluck.core.model.builtin import BUILTIN
from potluck.core.model.catalog import CATALOG, PRECISIONS, ModelSize, fit_line
from potluck.core.numbers import format_bytes
from potluck.core.program import program_command
from potluck.core.server.memory import available_ram_bytes

ANOTHER = "Another model: a Hugging Face id, a folder or a .gguf file"
PRECISION_WORDS = {
    "none": "Full (the checkpoint's own): best answers, most memory",
    "int8": "int8: about half the memory, nearly the same answers",
    "int4": "int4: about a quarter of the memory, slightly different answers",
}
SIZE_TIMEOUT_SECONDS = 120.0  # a hub id fetches one config.json


@dataclass(frozen=True)
class Row:
    model: str  # what goes into the swarm's spec: a hub id, or "builtin"
    label: str
    size: ModelSize | None  # None for "another model" until it is sized


def catalog_rows(builtin_installed: bool) -> list[Row]:
    """The short list as the page shows it (the built-in model only where it is installed), then "another"."""
    rows = [Row(e.model_id, e.label, e.size) for e in CATALOG if builtin_installed or e.model_id != BUILTIN]
    return [*rows, Row("", ANOTHER, None)]


def size_cells(size: ModelSize | None) -> list[str]:
    """The table's size cells: blocks, then the bytes at each precision."""
    if size is None:
        return ["", *("" for _ in PRECISIONS)]
    return [str(size.num_blocks), *(format_bytes(size.blocks_bytes[p]) for p in PRECISIONS)]


def size_from_engine(model: str, program: list[str] | None = None) -> ModelSize:
    """Ask the engine (a separate process) for a model's size; raises RuntimeError with its words on failure."""
    command = [*(program or program_command()), "models", "--model", model, "--json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SIZE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise RuntimeError("sizing the model took too long (is the hub reachable?)") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(lines[-1].removeprefix("potluck models: ") if lines
                           else f"the engine exited with {done.returncode}")
    row = json.loads(done.stdout)["models"][0]
    return ModelSize(row["model"], int(row["blocks"]), {p: int(row["bytes"][p]) for p in PRECISIONS},
                     str(row["native_dtype"]))


class ModelCatalog(QWidget):
    """The list, the precision choice, the fit line; `model()` and `quant()` are what the page saves."""

    changed = Signal()

    def __init__(self, builtin_installed: bool, free_bytes: Callable[[], int] = available_ram_bytes,
                 sizer: Callable[[str], ModelSize] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._free_bytes = free_bytes
        self._sizer = sizer or (lambda model: size_from_engine(model))  # looked up when called (tests replace it)
        self.rows = catalog_rows(builtin_installed)
        self._other_size: ModelSize | None = None
        self._other_problem = ""  # the engine refused the typed model (an unsupported architecture)
        self._sized_text = ""
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        self.table = QTableWidget(len(self.rows), 2 + len(PRECISIONS))
        self.table.setHorizontalHeaderLabels(["Model", "Blocks", "Full", "int8", "int4"])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, 2 + len(PRECISIONS)):
            self.table.horizontalHeader().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        for index, row in enumerate(self.rows):
            self._fill(index, row.label, row.size)
        rows_shown = 5.5  # the rest scroll; half a row shows that there are more
        height = int(self.table.horizontalHeader().sizeHint().height()
                     + self.table.verticalHeader().defaultSectionSize() * rows_shown) + 2 * self.table.frameWidth()
        self.table.setFixedHeight(height)
        layout.addWidget(self.table)
        self.picker = ModelPicker()
        self.picker.builtin_button.setVisible(False)  # the built-in model is a row of the list
        self.picker.setVisible(False)
        layout.addWidget(self.picker)
        line = QHBoxLayout()
        line.addWidget(label("Precision", ""))
        self.precision = QComboBox()
        for key in PRECISIONS:
            self.precision.addItem(PRECISION_WORDS[key], key)
        line.addWidget(self.precision, 1)
        layout.addLayout(line)
        self.fit_label = label("", "muted", wrap=True)
        layout.addWidget(self.fit_label)
        self._size_timer = QTimer(self)
        self._size_timer.setSingleShot(True)
        self._size_timer.setInterval(700)  # size a typed model once typing pauses
        self._size_timer.timeout.connect(self._size_other)
        self.table.itemSelectionChanged.connect(self._update)
        self.precision.currentIndexChanged.connect(self._update)
        self.picker.changed.connect(self._typed)
        self.table.selectRow(0)

    # ------------------------------------------------------------------ what the page saves

    def selected(self) -> Row:
        rows = self.table.selectionModel().selectedRows()
        return self.rows[rows[0].row() if rows else 0]

    def is_other(self) -> bool:
        return not self.selected().model

    def model(self) -> str:
        return self.picker.text() if self.is_other() else self.selected().model

    def quant(self) -> str:
        return str(self.precision.currentData())

    def problem(self) -> str:
        return (self.picker.problem() or self._other_problem) if self.is_other() else ""

    def select_model(self, model: str) -> None:
        """Select `model`'s row, or "another" with `model` typed in."""
        for index, row in enumerate(self.rows):
            if row.model == model:
                self.table.selectRow(index)
                return
        self.table.selectRow(len(self.rows) - 1)
        self.picker.set_text(model)

    # ------------------------------------------------------------------ inside

    def _fill(self, index: int, text: str, size: ModelSize | None) -> None:
        for column, cell in enumerate([text, *size_cells(size)]):
            item = QTableWidgetItem(cell)
            if column:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(index, column, item)

    def _size(self) -> ModelSize | None:
        return self._other_size if self.is_other() else self.selected().size

    def _update(self) -> None:
        other = self.is_other()
        self.picker.setVisible(other)
        size = self._size()
        if size is not None:
            self.fit_label.setText(sentence(capitalised(fit_line(size, self.quant(), self._free_bytes()))))
            set_role(self.fit_label, "muted")
        elif other and not self.picker.problem():
            self.fit_label.setText("Working out its size…")
        else:
            self.fit_label.setText("")
        self.changed.emit()

    def _typed(self) -> None:
        if self.picker.text() != self._sized_text:
            self._other_size, self._other_problem = None, ""
            self._fill(len(self.rows) - 1, ANOTHER, None)
        if self.is_other() and not self.picker.problem():
            self._size_timer.start()
        self._update()

    def _size_other(self) -> None:
        text = self.picker.text()
        if not text or self.picker.problem() or text == self._sized_text:
            return
        self._sized_text = text

        def done(size: ModelSize) -> None:
            if self.picker.text() != text:
                return  # typed on since
            self._other_size = size
            self._fill(len(self.rows) - 1, ANOTHER, size)
            self._update()

        def failed(error: Exception) -> None:
            if self.picker.text() != text:
                return
            words = str(error)
            if "not supported" in words:  # no family for it: the swarm could not serve it, so the page refuses it
                self._other_problem = capitalised(words)
            self.fit_label.setText(f"Cannot size that model: {words}")
            set_role(self.fit_label, "error")
            self.changed.emit()

        run_in_background(lambda: self._sizer(text), done, failed)
