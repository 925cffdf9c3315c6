"""PotluckApp: wires the node process, the tray, the notifications and the windows together.

Everything it needs arrives in one `AppContext` (production values come from `default_context`), so tests build
the whole app around the fake node. Windows are created the first time they are opened.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QSettings
from PySide6.QtWidgets import QApplication, QWidget

from potluck.app.autostart import Autostart, gui_command
from potluck.app.chat import ChatWindow
from potluck.app.config_store import AppConfig, ConfigError, load_config, save_config
from potluck.app.dashboard import Dashboard
from potluck.app.icons import IconSet
from potluck.app.log_file import NodeLogFile
from potluck.app.node_command import NodeTimeouts, RestartPolicy, node_command, node_environment, program_command
from potluck.app.node_process import NodeProcess
from potluck.app.notifications import Notifier
from potluck.app.paths import config_file, default_log_dir, resources_dir
from potluck.app.secrets_store import SecretKey, SecretStore
from potluck.app.settings import SettingsWindow
from potluck.app.tray import Tray
from potluck.app.wizard import FirstRunWizard, InviteDecoder, real_invite_decoder
from potluck.core.protocol import AlertLevel

INVITE_TIMEOUT_SECONDS = 120


@dataclass
class AppContext:
    node_command: list[str]
    config_path: Path
    secrets: SecretStore
    ui_settings: QSettings
    icons: IconSet
    autostart: Autostart
    make_invite: Callable[[], str]
    invite_decoder: InviteDecoder | None
    default_log_dir: Path
    tray_available: bool = True
    base_environment: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    node_timeouts: NodeTimeouts = NodeTimeouts()
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)


def cli_invite_maker(program: list[str], environment: Callable[[], Mapping[str, str]],
                     swarm_name: Callable[[], str] = lambda: "") -> Callable[[], str]:
    """An invite maker that runs `<program> invite create [--swarm NAME]` and takes the code (`potluck-…`) from
    its output (the running node answers the joiner's handshake)."""

    def make() -> str:
        name = swarm_name()
        args = [*program, "invite", "create", *(["--swarm", name] if name else [])]
        result = subprocess.run(args, capture_output=True, text=True, env=dict(environment()),
                                timeout=INVITE_TIMEOUT_SECONDS, check=False)
        codes = [word for word in result.stdout.split() if word.startswith("potluck-")]
        if result.returncode != 0 or not codes:
            last = (result.stderr.strip().splitlines() or ["no invite code in its output"])[-1]
            raise RuntimeError(f"Creating an invite failed: {last}")
        return codes[-1]

    return make


def _load_config_quietly(path):
    try:
        return load_config(path)
    except ConfigError:
        return None


def default_context(tray_available: bool) -> AppContext:
    secrets = SecretStore()
    base = dict(os.environ)
    command, working_dir = gui_command()
    return AppContext(
        node_command=node_command(base),
        config_path=config_file(),
        secrets=secrets,
        ui_settings=QSettings(),
        icons=IconSet(resources_dir() / "icons"),
        autostart=Autostart(command, working_dir),
        make_invite=cli_invite_maker(program_command(bool(getattr(sys, "frozen", False)), sys.executable),
                                     lambda: node_environment(base, secrets.node_environment()),
                                     lambda: getattr(_load_config_quietly(config_file()), "swarm_name", "")),
        invite_decoder=real_invite_decoder(),
        default_log_dir=default_log_dir(),
        tray_available=tray_available,
        base_environment=base,
    )


class PotluckApp(QObject):
    def __init__(self, qapp: QApplication, context: AppContext, quit_event_loop: Callable[[], None] | None = None) -> None:
        """quit_event_loop ends the app's event loop (QApplication.quit unless given)."""
        super().__init__()
        self._qapp = qapp
        self._quit_event_loop = quit_event_loop or qapp.quit
        self.context = context
        self.config_error = ""
        try:
            self.config: AppConfig | None = load_config(context.config_path)
        except ConfigError as exc:
            self.config, self.config_error = None, str(exc)
        self.node = NodeProcess(context.node_command, environment=self._node_environment,
                                config_values=self._node_config_values, timeouts=context.node_timeouts,
                                restart_policy=context.restart_policy, parent=self)
        self.log_file = NodeLogFile(self._log_dir())
        self.node.log_line.connect(lambda line: self.log_file.write(line))
        self.tray = Tray(self.node, context.icons, open_dashboard=self.show_dashboard, open_chat=self.show_chat,
                         open_settings=self.show_settings, make_invite=context.make_invite, quit_app=self.quit,
                         clipboard=qapp.clipboard(), parent=self)
        self.notifier = Notifier(self.node, self.tray.show_message, parent=self)
        self.dashboard: Dashboard | None = None
        self.chat: ChatWindow | None = None
        self.settings_window: SettingsWindow | None = None
        self.wizard: FirstRunWizard | None = None
        self.quitting = False
        qapp.setQuitOnLastWindowClosed(not context.tray_available)

    # ------------------------------------------------------------------ life cycle

    def launch(self) -> None:
        if self.context.tray_available:
            self.tray.show()
        if self.config is None:
            self.show_wizard()
            if self.config_error:
                self.tray.show_message("Settings could not be read", self.config_error + " Please set Potluck up again.",
                                       AlertLevel.WARNING)
            return
        self.node.start()
        if not self.context.tray_available:
            self.show_dashboard()

    def quit(self) -> None:
        """Close the windows, stop the node gracefully (it has its own timeouts), then leave the event loop."""
        if self.quitting:
            return
        self.quitting = True
        for window in (self.dashboard, self.chat, self.settings_window, self.wizard):
            if window is not None:
                window.close()
        self.tray.hide()
        if self.node.is_running:
            self.node.stopped.connect(self._quit_event_loop)
            self.node.stop()
        else:
            self.node.stop()
            self._quit_event_loop()

    def shutdown_now(self) -> None:
        """Last resort when the event loop has ended: stop the node in place."""
        self.node.stop_blocking()
        self.log_file.close()

    # ------------------------------------------------------------------ windows

    def show_dashboard(self) -> None:
        if self.config is None:
            self.show_wizard()
            return
        if self.dashboard is None:
            self.dashboard = Dashboard(self.node, self.context.icons, self.context.ui_settings, open_chat=self.show_chat,
                                       invite_friend=self.tray.invite_friend, open_settings=self.show_settings)
        _raise(self.dashboard)

    def show_chat(self) -> None:
        if self.chat is None:
            self.chat = ChatWindow(self.node, self.context.ui_settings, self.context.icons)
        _raise(self.chat)

    def show_settings(self) -> None:
        if self.config is None:
            self.show_wizard()
            return
        if self.settings_window is None:
            self.settings_window = SettingsWindow(self.config, self._save_settings, self.context.autostart,
                                                  self.context.ui_settings, self.context.default_log_dir,
                                                  secrets_where=self.context.secrets.where)
            self.settings_window.finished.connect(self._forget_settings_window)
        _raise(self.settings_window)

    def show_wizard(self) -> None:
        if self.wizard is None:
            self.wizard = FirstRunWizard(self.node, self._finish_wizard, self.context.invite_decoder)
            self.wizard.setWindowIcon(self.context.icons.app_icon())
            self.wizard.set_logo(self.context.icons.app_icon())
        _raise(self.wizard)

    # ------------------------------------------------------------------ callbacks

    def _finish_wizard(self, config: AppConfig, invite_code: str | None) -> None:
        if invite_code:
            self.context.secrets.set(SecretKey.INVITE_CODE, invite_code)
        save_config(self.context.config_path, config)
        self.config = config
        self._switch_log_dir()
        if self.node.is_running:
            self.node.stop()  # the new secrets reach a node only through a fresh environment
            self.node.stopped.connect(self._start_after_stop)
        else:
            self.node.start()

    def _start_after_stop(self) -> None:
        self.node.stopped.disconnect(self._start_after_stop)
        self.node.start()

    def _save_settings(self, config: AppConfig) -> None:
        save_config(self.context.config_path, config)
        self.config = config
        self._switch_log_dir()
        if self.node.is_running:
            self.node.set_config(self._node_config_values())

    def _forget_settings_window(self) -> None:
        self.settings_window.deleteLater()
        self.settings_window = None

    def _node_environment(self) -> dict[str, str]:
        return node_environment(self.context.base_environment, self.context.secrets.node_environment())

    def _node_config_values(self) -> dict:
        return self.config.node_values(self.context.default_log_dir) if self.config is not None else {}

    def _log_dir(self) -> Path:
        return Path(self.config.log_dir) if self.config is not None and self.config.log_dir else self.context.default_log_dir

    def _switch_log_dir(self) -> None:
        if self.log_file.path.parent != self._log_dir():
            self.log_file.close()
            self.log_file = NodeLogFile(self._log_dir())


def _raise(window: QWidget) -> None:
    window.show()
    window.raise_()
    window.activateWindow()
