"""The whole app (PotluckApp) around the fake node: first run, normal start, settings, quit; and the GUI never
imports torch, transformers or hivemind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication, QLabel

from potluck.app.app_controller import AppContext, PotluckApp
from potluck.app.autostart import Autostart
from potluck.app.config_store import AppConfig, SwarmMode, load_config, save_config
from potluck.app.node_command import NodeTimeouts, RestartPolicy
from potluck.app.secrets_store import SecretKey, SecretStore
from potluck.app.wizard import real_invite_decoder
from potluck.core import protocol
from potluck.core.protocol import NodeState
from potluck.core.swarm.tailscale import TailscaleReport, TailscaleState
from tests.app.node_records import launches, sent_commands
from tests.app.test_wizard import valid_invite_code

WAIT_MS = 15_000
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def context(tmp_path, fake_node_command, ui_settings, icons, memory_keyring):
    record = tmp_path / "record.jsonl"
    import os

    return AppContext(
        node_command=fake_node_command,
        config_path=tmp_path / "config" / "app.json",
        secrets=SecretStore(),
        ui_settings=ui_settings,
        icons=icons,
        autostart=Autostart(["/opt/potluck"], platform="linux", linux_dir=lambda: tmp_path / "autostart"),
        invite_decoder=real_invite_decoder(),
        default_log_dir=tmp_path / "logs",
        tray_available=True,
        base_environment={**os.environ, "FAKE_NODE_RECORD": str(record)},
        node_timeouts=NodeTimeouts(hello_ms=15_000, shutdown_ms=3_000, terminate_ms=3_000, kill_ms=3_000),
        restart_policy=RestartPolicy(first_delay_seconds=0.01),
        tailscale_probe=lambda: TailscaleReport(TailscaleState.NOT_INSTALLED),
        confirm=lambda _title, _question: True,
    )


class LoopQuit:
    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


@pytest.fixture
def make_app(qtbot):
    made = []

    def make(context):
        quit_loop = LoopQuit()
        app = PotluckApp(QApplication.instance(), context, quit_event_loop=quit_loop)
        app.loop_quit = quit_loop
        made.append(app)
        return app

    yield make
    for app in made:
        for window in (app.dashboard, app.chat, app.wizard, app.settings_window, app.swarm_window):
            if window is not None:
                window.close()
                window.deleteLater()
        app.tray.hide()
        app.shutdown_now()


def record_of(context) -> Path:
    return Path(context.base_environment["FAKE_NODE_RECORD"])


def test_first_run_join_saves_settings_keeps_the_secret_out_of_files_and_starts_serving(qtbot, context, make_app):
    app = make_app(context)
    app.launch()
    assert app.wizard is not None and app.wizard.isVisible()
    assert launches(record_of(context)) == []  # nothing runs before the owner chose
    code = valid_invite_code()
    app.wizard.next()
    app.wizard.join_page.code_edit.setPlainText(code)
    app.wizard.next()
    qtbot.waitUntil(lambda: app.node.state is NodeState.SERVING, timeout=WAIT_MS)
    config = load_config(context.config_path)
    assert (config.mode, config.model, config.swarm_name) == (SwarmMode.JOIN, "org/tiny-llama", "Friday night")
    assert context.secrets.get(SecretKey.INVITE_CODE) == code
    assert code not in context.config_path.read_text()
    (launch,) = launches(record_of(context))
    assert launch["potluck_env"]["POTLUCK_INVITE_CODE"] == code and code not in launch["argv"]
    set_config = next(c for c in sent_commands(record_of(context)) if isinstance(c, protocol.SetConfig))
    assert set_config.values["model"] == "org/tiny-llama" and set_config.values["mode"] == "join"
    qtbot.waitUntil(lambda: "node 0.0-fake is up" in (Path(context.default_log_dir) / "node.log").read_text(),
                    timeout=WAIT_MS)


def test_a_configured_app_starts_serving_and_quit_stops_the_node(qtbot, context, make_app):
    save_config(context.config_path, AppConfig(mode=SwarmMode.CREATE, model="org/tiny", pc_name="den"))
    app = make_app(context)
    app.launch()
    assert app.wizard is None
    qtbot.waitUntil(lambda: app.node.state is NodeState.SERVING, timeout=WAIT_MS)
    app.show_dashboard()
    app.show_chat()
    assert app.dashboard.isVisible() and app.chat.isVisible()
    app.quit()
    qtbot.waitUntil(lambda: app.loop_quit.count == 1, timeout=WAIT_MS)
    assert app.node.state is NodeState.STOPPED and not app.node.is_running
    assert isinstance(sent_commands(record_of(context))[-1], protocol.Shutdown)
    assert not app.dashboard.isVisible() and not app.chat.isVisible()


def test_settings_changes_are_saved_and_sent_to_the_node(qtbot, context, make_app):
    save_config(context.config_path, AppConfig(mode=SwarmMode.CREATE, model="org/tiny"))
    app = make_app(context)
    app.launch()
    qtbot.waitUntil(lambda: app.node.state is NodeState.SERVING, timeout=WAIT_MS)
    app.show_settings()
    app.settings_window.memory_cap.setValue(4)
    app.settings_window.save_button.click()
    assert load_config(context.config_path).memory_cap_gib == 4.0
    qtbot.waitUntil(lambda: any(isinstance(c, protocol.SetConfig) and c.values["memory_cap_bytes"] == 4 * 2**30
                                for c in sent_commands(record_of(context))), timeout=WAIT_MS)
    assert app.settings_window is None or not app.settings_window.isVisible()


def test_a_broken_settings_file_leads_to_the_wizard_with_a_message(qtbot, context, make_app):
    context.config_path.parent.mkdir(parents=True)
    context.config_path.write_text("{ not json")
    app = make_app(context)
    app.launch()
    assert app.wizard is not None and app.wizard.isVisible()
    assert app.tray.last_message[0] == "Settings could not be read"
    assert "not valid JSON" in app.tray.last_message[1]


def test_without_a_tray_the_dashboard_is_the_main_window(qtbot, context, make_app):
    save_config(context.config_path, AppConfig(mode=SwarmMode.CREATE, model="org/tiny"))
    context.tray_available = False
    app = make_app(context)
    app.launch()
    assert app.dashboard is not None and app.dashboard.isVisible()
    assert QApplication.instance().quitOnLastWindowClosed()
    QApplication.instance().setQuitOnLastWindowClosed(False)


GUI_IMPORT_CHECK = """
import json, pkgutil, importlib, sys
import potluck.app
for info in pkgutil.iter_modules(potluck.app.__path__):
    importlib.import_module("potluck.app." + info.name)
from potluck.app.entry import main
from potluck.app.main import make_qapplication
from potluck.app.app_controller import default_context
qapp = make_qapplication([])
context = default_context(tray_available=False)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "hivemind"))
print(json.dumps(heavy))
"""


def test_the_gui_never_imports_torch_transformers_or_hivemind(tmp_path):
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_STATE_HOME": str(tmp_path / "state")}
    result = subprocess.run([sys.executable, "-c", GUI_IMPORT_CHECK], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_a_used_code_in_the_wizard_is_no_dead_end(qtbot, context, make_app):
    """The node fails to join: nothing is saved, the last page says why and leads Back to the code; another code
    works and only then are the settings saved."""
    used = valid_invite_code(swarm_name="Old club")
    context.base_environment = {**context.base_environment, "FAKE_NODE_USED_CODE": used}
    app = make_app(context)
    app.launch()
    wizard = app.wizard
    wizard.next()
    wizard.join_page.code_edit.setPlainText(used)
    wizard.next()
    qtbot.waitUntil(lambda: app.node.state is NodeState.FAILED, timeout=WAIT_MS)
    page = wizard.ready_page
    assert "already been used" in page.state_label.text() and page.state_label.text().endswith("new one.")
    assert "Not ready" in page.title() and "nothing is saved" in page.subTitle()
    assert page.back_button.isVisible() and wizard.button(wizard.WizardButton.BackButton).isVisible()
    assert load_config(context.config_path) is None  # closing now leaves nothing half set up
    page.back_button.click()
    assert wizard.currentId() == 2 and wizard.join_page.code() == used  # the join page, the code still there
    fresh = valid_invite_code(swarm_name="Friday night")
    wizard.join_page.code_edit.setPlainText(fresh)
    wizard.next()
    qtbot.waitUntil(lambda: app.node.state is NodeState.SERVING, timeout=WAIT_MS)
    assert "Ready" in page.title() and "starting" not in page.subTitle().lower()
    qtbot.waitUntil(lambda: load_config(context.config_path) is not None, timeout=WAIT_MS)
    assert load_config(context.config_path).swarm_name == "Friday night"
    assert context.secrets.get(SecretKey.INVITE_CODE) == fresh


def test_closing_the_wizard_after_a_failed_join_brings_it_back(qtbot, context, make_app):
    used = valid_invite_code()
    context.base_environment = {**context.base_environment, "FAKE_NODE_USED_CODE": used}
    app = make_app(context)
    app.launch()
    app.wizard.next()
    app.wizard.join_page.code_edit.setPlainText(used)
    app.wizard.next()
    qtbot.waitUntil(lambda: app.node.state is NodeState.FAILED, timeout=WAIT_MS)
    app.wizard.close()
    app.quit()
    qtbot.waitUntil(lambda: app.loop_quit.count == 1, timeout=WAIT_MS)
    again = make_app(context)
    again.launch()
    assert again.config is None and again.wizard is not None and again.wizard.isVisible()


@pytest.mark.parametrize(("keyring_works", "words"), [(True, "the system keyring"), (False, "a private file in")])
def test_the_app_says_where_the_secret_really_goes(qtbot, context, make_app, keyring_works, words):
    import keyring
    from keyring.backends import fail

    if not keyring_works:
        keyring.set_keyring(fail.Keyring())  # the memory keyring fixture puts its own back afterwards
    app = make_app(context)
    app.launch()
    app.wizard.next()
    assert words in app.wizard.join_page.form.secret_note.text()
    save_config(context.config_path, AppConfig(mode=SwarmMode.CREATE, model="org/tiny"))
    other = make_app(context)
    other.launch()
    other.show_settings()
    texts = [w.text() for w in other.settings_window.findChildren(QLabel)]
    assert any(words in t for t in texts)
    assert keyring_works or not any("kept in the system keyring" in t for t in texts)
