"""SamplingPanel: the chat's generation settings (length, temperature, top-p, top-k, repetition penalty, seed,
guessing ahead, private chats), kept in QSettings between runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from potluck.app import theme
from potluck.app.stat_card import label
from potluck.app.ui_state import UiKey, load_json, save_json


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 = always the most likely token
    top_p: float = 0.9
    top_k: int = 50  # 0 = no cut
    repetition_penalty: float = 1.0  # 1 = none
    seed: int | None = None  # None = different each time
    guess_ahead: bool = True  # speculative decoding by prompt lookup: the same replies in fewer trips
    private: bool = False  # the first and last blocks on this PC: friends see no words of the chat

    @classmethod
    def from_json(cls, data: object) -> "SamplingSettings":
        """Stored settings, falling back to defaults for anything missing or wrong (UI state must never fail)."""
        if not isinstance(data, dict):
            return cls()
        defaults = cls()
        values = {}
        for f in fields(cls):
            value = data.get(f.name, getattr(defaults, f.name))
            expected = getattr(defaults, f.name)
            if f.name == "seed":
                ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
            elif isinstance(expected, bool):
                ok = isinstance(value, bool)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = type(expected)(value) if ok else expected
            values[f.name] = value if ok else expected
        return cls(**values)


class SamplingPanel(QFrame):
    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self.setObjectName("card")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.CARD_PADDING_PX, theme.CARD_PADDING_PX, theme.CARD_PADDING_PX, theme.CARD_PADDING_PX)
        layout.setSpacing(theme.SPACING_PX)
        layout.addWidget(label("Reply settings", "title"))
        form = QFormLayout()
        form.setSpacing(8)
        self.max_new_tokens = self._spin(QSpinBox(), 1, 4096, 1)
        self.temperature = self._spin(QDoubleSpinBox(), 0.0, 2.0, 0.05)
        self.top_p = self._spin(QDoubleSpinBox(), 0.05, 1.0, 0.05)
        self.top_k = self._spin(QSpinBox(), 0, 500, 5)
        self.top_k.setSpecialValueText("off")
        self.repetition_penalty = self._spin(QDoubleSpinBox(), 1.0, 2.0, 0.05)
        self.fixed_seed = QCheckBox("Same seed every time")
        self.seed = self._spin(QSpinBox(), 0, 2**31 - 1, 1)
        self.fixed_seed.toggled.connect(self.seed.setEnabled)
        self.guess_ahead = QCheckBox("Guess ahead (faster, same replies)")
        self.guess_ahead.setToolTip("Guesses the next words from the conversation and lets the swarm check several "
                                    "at once: fewer trips through friends' PCs")
        self.private = QCheckBox("Private: first and last blocks on this PC")
        self.private.setToolTip("Friends' PCs never see the words you type or the reply's choices, only the "
                                "model's inner numbers, which a determined friend can still partly read back. "
                                "Uses more memory and time on this PC.")
        form.addRow("Longest reply (tokens)", self.max_new_tokens)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Top-k", self.top_k)
        form.addRow("Repetition penalty", self.repetition_penalty)
        form.addRow(self.fixed_seed)
        form.addRow("Seed", self.seed)
        form.addRow(self.guess_ahead)
        form.addRow(self.private)
        layout.addLayout(form)
        hint = "Lower temperature gives steadier answers; 0 always picks the most likely word."
        layout.addWidget(label(hint, "muted", wrap=True))
        reset = QPushButton("Reset to defaults")
        reset.clicked.connect(lambda: self.set_values(SamplingSettings()))
        layout.addWidget(reset)
        layout.addStretch(1)
        self.set_values(SamplingSettings.from_json(load_json(settings, UiKey.CHAT_SAMPLING)))

    @staticmethod
    def _spin(box, minimum, maximum, step):
        box.setRange(minimum, maximum)
        box.setSingleStep(step)
        return box

    def set_values(self, values: SamplingSettings) -> None:
        self.max_new_tokens.setValue(values.max_new_tokens)
        self.temperature.setValue(values.temperature)
        self.top_p.setValue(values.top_p)
        self.top_k.setValue(values.top_k)
        self.repetition_penalty.setValue(values.repetition_penalty)
        self.fixed_seed.setChecked(values.seed is not None)
        self.seed.setEnabled(values.seed is not None)
        self.seed.setValue(values.seed or 0)
        self.guess_ahead.setChecked(values.guess_ahead)
        self.private.setChecked(values.private)

    def values(self) -> SamplingSettings:
        return SamplingSettings(
            max_new_tokens=self.max_new_tokens.value(),
            temperature=round(self.temperature.value(), 4),
            top_p=round(self.top_p.value(), 4),
            top_k=self.top_k.value(),
            repetition_penalty=round(self.repetition_penalty.value(), 4),
            seed=self.seed.value() if self.fixed_seed.isChecked() else None,
            guess_ahead=self.guess_ahead.isChecked(),
            private=self.private.isChecked(),
        )

    def save(self) -> None:
        save_json(self._settings, UiKey.CHAT_SAMPLING, asdict(self.values()))
