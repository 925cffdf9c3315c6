"""Settings window: valid changes are saved and applied, invalid ones are explained and nothing is written."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QLabel

from potluck.app.autostart import Autostart
from potluck.app.config_store import AppConfig, SwarmMode
from potluck.app.settings import SettingsWindow


class SaveRecorder:
    def __init__(self, error: Exception | None = None):
        self.saved: list[AppConfig] = []
        self.error = error

    def __call__(self, config: AppConfig) -> None:
        if self.error is not None:
            raise self.error
        self.saved.append(config)


@pytest.fixture
def autostart(tmp_path):
    return Autostart(["/opt/potluck"], platform="linux", linux_dir=lambda: tmp_path / "autostart")


def make_window(qtbot, ui_settings, autostart, tmp_path, config=None, on_save=None):
    config = config or AppConfig(mode=SwarmMode.CREATE, model="org/tiny", pc_name="den")
    on_save = on_save or SaveRecorder()
    window = SettingsWindow(config, on_save, autostart, ui_settings, tmp_path / "logs", secrets_where="system keyring")
    qtbot.addWidget(window)
    window.show()
    return window, on_save


def test_saving_valid_settings_applies_them(qtbot, ui_settings, autostart, tmp_path):
    window, on_save = make_window(qtbot, ui_settings, autostart, tmp_path)
    assert window.memory_cap.text() == "Automatic (from free memory)"
    window.memory_cap.setValue(6.5)
    window.start_on_login.setChecked(True)
    window.log_dir_edit.setText(str(tmp_path / "mylogs"))
    window.save_button.click()
    (saved,) = on_save.saved
    assert (saved.model, saved.memory_cap_gib, saved.start_on_login, saved.log_dir) == \
        ("org/tiny", 6.5, True, str(tmp_path / "mylogs"))
    assert (tmp_path / "autostart" / "potluck.desktop").is_file()
    assert not window.isVisible()


@pytest.mark.parametrize(("model", "log_dir", "message"), [
    ("not a model", "", "org/model-name"),
    ("", "", "Enter a Hugging Face model id"),
    ("org/ok", "relative/logs", "must be a full path"),
])
def test_invalid_settings_are_explained_and_not_saved(qtbot, ui_settings, autostart, tmp_path, model, log_dir, message):
    window, on_save = make_window(qtbot, ui_settings, autostart, tmp_path)
    window.model_edit.setText(model)
    window.log_dir_edit.setText(log_dir)
    window.start_on_login.setChecked(True)
    window.save_button.click()
    assert message in window.error_label.text() and window.error_label.isVisible()
    assert on_save.saved == [] and window.isVisible()
    assert not autostart.is_enabled()
    assert window.model_edit.text() == model  # nothing typed is lost


def test_a_failed_save_is_shown_and_the_window_stays(qtbot, ui_settings, autostart, tmp_path):
    window, _ = make_window(qtbot, ui_settings, autostart, tmp_path, on_save=SaveRecorder(PermissionError("read-only disk")))
    window.memory_cap.setValue(3)
    window.save_button.click()
    assert "Could not save the settings: read-only disk" in window.error_label.text()
    assert window.isVisible()


def test_a_refused_autostart_change_is_shown(qtbot, ui_settings, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the autostart folder should be")
    autostart = Autostart(["/opt/potluck"], platform="linux", linux_dir=lambda: blocked / "autostart")
    window, on_save = make_window(qtbot, ui_settings, autostart, tmp_path)
    window.start_on_login.setChecked(True)
    window.save_button.click()
    assert "Could not change start on login" in window.error_label.text()
    assert on_save.saved == []


def test_a_joined_swarm_model_is_read_only(qtbot, ui_settings, autostart, tmp_path):
    config = AppConfig(mode=SwarmMode.JOIN, model="org/their-model")
    window, on_save = make_window(qtbot, ui_settings, autostart, tmp_path, config=config)
    assert window.model_edit.isReadOnly()
    window.save_button.click()
    assert on_save.saved[0].model == "org/their-model"


def test_the_creator_cannot_change_the_swarms_model_here_either(qtbot, ui_settings, autostart, tmp_path):
    """Every friend serves the swarm's model: a new model is a new swarm (the Swarm page), not a setting."""
    window, on_save = make_window(qtbot, ui_settings, autostart, tmp_path)
    assert window.model_edit.isReadOnly()
    assert "To run another model, start a new swarm on the Swarm page." in window.model_hint.text()
    window.save_button.click()
    assert on_save.saved[0].model == "org/tiny"


def test_where_the_key_is_kept_is_said_only_when_known(qtbot, ui_settings, autostart, tmp_path):
    window = SettingsWindow(AppConfig(mode=SwarmMode.CREATE, model="org/tiny"), SaveRecorder(), autostart,
                            ui_settings, tmp_path / "logs")
    qtbot.addWidget(window)
    assert not any("kept in" in w.text() for w in window.findChildren(QLabel))
