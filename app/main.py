"""run_gui: the desktop app's entry point (called by potluck.app.entry with no arguments or `gui`).

Single instance (a second launch asks the first to show its dashboard and exits 0), tray-first (closing windows
does not quit), and a graceful exit on Quit, SIGTERM or SIGINT: the node is stopped before the app leaves.
"""

from __future__ import annotations

import signal
import socket
import sys

from PySide6.QtCore import QSocketNotifier
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from potluck.app.app_controller import PotluckApp, default_context
from potluck.app.paths import APP_ID, APP_NAME, config_dir
from potluck.app.qt_compat import protect_singletons
from potluck.app.single_instance import SingleInstance, instance_key
from potluck.app.theme import apply_theme


def make_qapplication(argv: list[str]) -> QApplication:
    existing = QApplication.instance()
    qapp = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0], *argv])
    qapp.setApplicationName(APP_NAME)
    qapp.setOrganizationName(APP_NAME)
    qapp.setDesktopFileName(APP_ID)
    return qapp


def quit_on_signals(qapp: QApplication, quit_app) -> tuple[socket.socket, socket.socket, QSocketNotifier]:
    """Route SIGTERM/SIGINT into the event loop (a Python handler alone would wait for the next Python call).
    Returns what must stay alive while the loop runs."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_args: None)  # the wakeup fd does the work

    def on_wakeup() -> None:
        try:
            reader.recv(64)
        except OSError:
            pass
        quit_app()

    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, qapp)
    notifier.activated.connect(on_wakeup)
    return reader, writer, notifier


def run_gui(argv: list[str]) -> int:
    protect_singletons()  # PySide6 6.12 on Python 3.11 (see app/qt_compat.py)
    qapp = make_qapplication(argv)
    instance = SingleInstance(instance_key(config_dir()), config_dir())
    if not instance.claim():
        return 0
    try:
        apply_theme(qapp)
        app = PotluckApp(qapp, default_context(tray_available=QSystemTrayIcon.isSystemTrayAvailable()))
        instance.show_requested.connect(app.show_dashboard)
        keep_alive = quit_on_signals(qapp, app.quit)
        app.launch()
        code = qapp.exec()
        app.shutdown_now()
        signal.set_wakeup_fd(-1)
        del keep_alive
        return code
    finally:
        instance.release()
