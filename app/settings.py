"""SettingsWindow: the model, the memory cap, start on login, the log folder, when this PC serves (the serving
rules: idle, battery, schedule, upload cap, CPU threads) and whether apps on this PC may use the swarm.

Saving validates first and shows problems inline; nothing is written unless everything is valid. `on_save`
receives the new AppConfig (the app writes it to disk and tells the node); start on login is applied here through
`Autostart`, whose error (a folder it may not write) is shown instead of being lost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings, QUrl
from PySide6.QtGui import QDesktopServices, QIcon
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from potluck.app import theme
from potluck.app.autostart import Autostart
from potluck.app.config_store import AppConfig, ConfigError, SwarmMode
from potluck.app.rules_panel import RulesPanel
from potluck.app.stat_card import label
from potluck.app.ui_state import UiKey, restore_geometry, save_geometry
from potluck.app.wizard import model_problem

AUTOMATIC_TEXT = "Automatic (from free memory)"


class SettingsWindow(QDialog):
    def __init__(
        self,
        config: AppConfig,
        on_save: Callable[[AppConfig], None],
        autostart: Autostart,
        settings: QSettings,
        default_log_dir: Path,
        secrets_where: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._config = config
        self._on_save = on_save
        self._autostart = autostart
        self._settings = settings
        self._default_log_dir = default_log_dir
        self.setWindowTitle("Potluck — Settings")
        self.resize(680, 700)  # fits a 768-pixel-high screen; the settings scroll, the buttons stay in view
        restore_geometry(settings, UiKey.SETTINGS_GEOMETRY, self)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, theme.MARGIN_PX)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        content = QWidget()
        self.scroll.setWidget(content)
        outer.addWidget(self.scroll, 1)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(theme.MARGIN_PX, theme.MARGIN_PX, theme.MARGIN_PX, 0)
        layout.setSpacing(theme.SPACING_PX)
        layout.addWidget(label("Settings", "title"))
        form = QFormLayout()
        form.setSpacing(10)

        self.model_edit = QLineEdit(config.model)
        joined = config.mode is SwarmMode.JOIN
        self.model_edit.setReadOnly(True)  # every member serves the swarm's model: it is not a per-PC setting
        form.addRow("Model", self.model_edit)
        model_hint = ("Set by the swarm you joined. Your own copy of it is chosen on the Swarm page." if joined else
                      "The swarm's model: every friend serves the same one. To run another model, start a new swarm "
                      "on the Swarm page.")
        self.model_hint = label(model_hint, "muted", wrap=True)
        form.addRow("", self.model_hint)

        self.memory_cap = QDoubleSpinBox()
        self.memory_cap.setRange(0, 4096)
        self.memory_cap.setDecimals(1)
        self.memory_cap.setSingleStep(1)
        self.memory_cap.setSuffix(" GiB")
        self.memory_cap.setSpecialValueText(AUTOMATIC_TEXT)
        self.memory_cap.setValue(config.memory_cap_gib)
        form.addRow("Memory for blocks", self.memory_cap)
        form.addRow("", label("The most memory the model's blocks may use on this PC.", "muted", wrap=True))

        self.start_on_login = QCheckBox("Start Potluck when I log in")
        self.start_on_login.setChecked(autostart.is_enabled())
        form.addRow("", self.start_on_login)

        self.log_dir_edit = QLineEdit(config.log_dir)
        self.log_dir_edit.setPlaceholderText(str(default_log_dir))
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse_log_dir)
        open_button = QPushButton("Open")
        open_button.clicked.connect(self._open_log_dir)
        row = QHBoxLayout()
        row.addWidget(self.log_dir_edit, 1)
        row.addWidget(browse)
        row.addWidget(open_button)
        form.addRow("Log folder", row)
        if secrets_where:  # where the swarm's key really is (the app asks core/secrets.py, or the node)
            form.addRow("", label(f"The swarm's key is kept in {secrets_where}.", "muted", wrap=True))
        layout.addLayout(form)
        self.rules_panel = RulesPanel(config.rules, config.api_enabled, config.api_port)
        layout.addWidget(self.rules_panel)

        self.error_label = label("", "error", wrap=True)
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.save_button = buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setObjectName("primary")
        for button in buttons.buttons():
            button.setIcon(QIcon())  # the platform's stock icons clash with the flat buttons
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        buttons.setContentsMargins(theme.MARGIN_PX, 0, theme.MARGIN_PX, 0)
        outer.addWidget(buttons)

    def log_dir(self) -> Path:
        return Path(self.log_dir_edit.text().strip() or self._default_log_dir).expanduser()

    def _browse_log_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder for Potluck's logs", str(self.log_dir()))
        if folder:
            self.log_dir_edit.setText(folder)

    def _open_log_dir(self) -> None:
        folder = self.log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))

    def save(self) -> None:
        model = self.model_edit.text().strip()
        if self._config.mode is SwarmMode.CREATE:
            problem = model_problem(model)
            if problem:
                self._show_error(problem)
                return
        log_dir_text = self.log_dir_edit.text().strip()
        if log_dir_text and not Path(log_dir_text).expanduser().is_absolute():
            self._show_error("The log folder must be a full path, like /home/you/potluck-logs.")
            return
        if self.rules_panel.problem():
            self._show_error(self.rules_panel.problem())
            return
        try:
            new_config = self._config.with_values(model=model, memory_cap_gib=round(self.memory_cap.value(), 1),
                                                  start_on_login=self.start_on_login.isChecked(), log_dir=log_dir_text,
                                                  rules=self.rules_panel.rules(),
                                                  api_enabled=self.rules_panel.api_enabled.isChecked(),
                                                  api_port=self.rules_panel.api_port.value())
        except ConfigError as exc:
            self._show_error(str(exc))
            return
        try:
            if self.start_on_login.isChecked() != self._autostart.is_enabled():
                self._autostart.set_enabled(self.start_on_login.isChecked())
        except OSError as exc:
            self._show_error(f"Could not change start on login ({self._autostart.describe()}): {exc}")
            return
        try:
            self._on_save(new_config)
        except (OSError, ConfigError) as exc:
            self._show_error(f"Could not save the settings: {exc}")
            return
        self._config = new_config
        self._show_error("")
        self.accept()

    def done(self, result: int) -> None:
        save_geometry(self._settings, UiKey.SETTINGS_GEOMETRY, self)
        super().done(result)
