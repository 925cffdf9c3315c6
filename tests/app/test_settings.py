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


# ---- when this PC serves (serving rules) and apps on this PC (the API) ---------------------------------------------


def test_serving_rules_and_the_api_are_saved_in_their_json_form(qtbot, ui_settings, autostart, tmp_path):
    from PySide6.QtCore import QTime

    window, on_save = make_window(qtbot, ui_settings, autostart, tmp_path)
    panel = window.rules_panel
    assert panel.idle_minutes.text() == "whether I use this PC or not" and not panel.scheduled.isChecked()
    panel.idle_minutes.setValue(10)
    assert panel.idle_minutes.text() == "only after 10 min without input"
    panel.scheduled.setChecked(True)
    for index in (5, 6):
        panel.days[index].setChecked(True)  # Mon–Fri are ticked by default: add the weekend
    panel.start_time.setTime(QTime(22, 0))
    panel.end_time.setTime(QTime(7, 30))
    assert panel.schedule_words.text() == "Serves every day 22:00–07:30."
    panel.upload_cap.setValue(50)
    panel.cpu_threads.setValue(1)
    assert panel.cpu_threads.text() == "1 thread"
    panel.api_enabled.setChecked(True)
    panel.api_port.setValue(8123)
    assert panel.api_words.text() == "Apps reach it at http://127.0.0.1:8123/v1 (this PC only)."
    window.save_button.click()
    (saved,) = on_save.saved
    assert saved.rules == {"idle_minutes": 10, "serve_on_battery": False, "cpu_threads": 1,
                           "schedule": [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "22:00", "end": "07:30"}],
                           "monthly_upload_cap_bytes": 50 * 2**30}
    assert (saved.api_enabled, saved.api_port) == (True, 8123)
    values = saved.node_values(tmp_path)
    assert values["rules"] == saved.rules and (values["api_enabled"], values["api_port"]) == (True, 8123)
    from potluck.core.node.config import NodeConfig, apply_values

    applied = apply_values(NodeConfig(), values)  # what the node makes of them
    assert applied.problems == () and applied.config.rules.idle_minutes == 10


def test_a_schedule_without_days_is_explained_and_not_saved(qtbot, ui_settings, autostart, tmp_path):
    window, on_save = make_window(qtbot, ui_settings, autostart, tmp_path)
    window.rules_panel.scheduled.setChecked(True)
    for box in window.rules_panel.days:
        box.setChecked(False)
    window.save_button.click()
    assert window.error_label.text() == "Choose at least one day for the schedule, or untick Only at these times."
    assert on_save.saved == []


def test_stored_rules_come_back_in_the_panel(qtbot, ui_settings, autostart, tmp_path):
    rules = {"idle_minutes": 5, "serve_on_battery": True, "monthly_upload_cap_bytes": 3 * 2**30,
             "schedule": [{"days": [5], "start": "09:00", "end": "17:00"}, {"days": [6], "start": "10:00", "end": "12:00"}]}
    config = AppConfig(mode=SwarmMode.CREATE, model="org/tiny", rules=rules)
    window, on_save = make_window(qtbot, ui_settings, autostart, tmp_path, config=config)
    panel = window.rules_panel
    assert (panel.idle_minutes.value(), panel.on_battery.isChecked(), panel.upload_cap.value()) == (5, True, 3)
    assert [b.isChecked() for b in panel.days] == [False] * 5 + [True, False]
    assert panel.schedule_words.text() == "Serves Sat 09:00–17:00; Sun 10:00–12:00."  # the second window is kept
    window.save_button.click()
    assert on_save.saved[0].rules["schedule"] == rules["schedule"]
