"""Small supporting pieces: background jobs report on the GUI thread, the node log file, the PySide6 guard."""

from __future__ import annotations

import sys
import threading

from potluck.app.background import run_in_background
from potluck.app.log_file import NodeLogFile
from potluck.app.qt_compat import protect_singletons, pyside_drops_none_refs


def test_background_jobs_run_off_the_gui_thread_and_report_on_it(qtbot):
    gui_thread = threading.get_ident()
    seen = {}

    def job():
        seen["job_thread"] = threading.get_ident()
        return 42

    run_in_background(job, lambda result: seen.update(result=result, done_thread=threading.get_ident()),
                      lambda exc: seen.update(error=exc))
    qtbot.waitUntil(lambda: "result" in seen, timeout=10_000)
    assert seen["result"] == 42 and seen["job_thread"] != gui_thread and seen["done_thread"] == gui_thread


def test_background_errors_reach_on_error_on_the_gui_thread(qtbot):
    gui_thread = threading.get_ident()
    seen = {}

    def job():
        raise RuntimeError("no swarm")

    run_in_background(job, lambda result: seen.update(result=result),
                      lambda exc: seen.update(error=str(exc), thread=threading.get_ident()))
    qtbot.waitUntil(lambda: "error" in seen, timeout=10_000)
    assert seen == {"error": "no swarm", "thread": gui_thread}


def test_a_result_for_a_closed_window_is_dropped_not_raised(qtbot):
    from PySide6.QtWidgets import QPushButton, QWidget

    class Window(QWidget):
        def __init__(self):
            super().__init__()
            self.button = QPushButton("Check", self)

        def show_result(self, value):
            self.button.setText(str(value))  # raises if the window's C++ side is gone

    release = threading.Event()
    window, other = Window(), {}
    run_in_background(lambda: release.wait(10) and 1, window.show_result, lambda exc: other.update(error=exc))
    run_in_background(lambda: 2, lambda result: other.update(result=result), lambda exc: other.update(error=exc))
    window.deleteLater()
    qtbot.waitUntil(lambda: "result" in other, timeout=10_000)  # the event loop ran: the window is deleted now
    release.set()
    qtbot.wait(200)  # the first job finishes and its result arrives for a window that no longer exists
    assert other == {"result": 2}


def test_node_log_file_appends_and_rotates(tmp_path):
    log = NodeLogFile(tmp_path / "logs", max_bytes=200)
    for index in range(10):
        log.write(f"line {index} " + "x" * 20)
    log.close()
    current = (tmp_path / "logs" / "node.log")
    rotated = (tmp_path / "logs" / "node.log.1")
    assert rotated.exists()
    assert "line 9" in (current.read_text() if current.exists() else rotated.read_text())


def test_node_log_file_failure_is_kept_not_raised(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    log = NodeLogFile(blocker / "logs")
    log.write("hello")
    assert "cannot write" in log.failed


def test_protect_singletons_makes_none_and_true_unreachable_by_zero(qapp):
    protect_singletons()  # idempotent enough: conftest already called it once
    if sys.version_info < (3, 12) and pyside_drops_none_refs():
        assert sys.getrefcount(None) > 2**39 and sys.getrefcount(True) > 2**39
    from PySide6.QtCore import QObject

    probe = QObject()
    for _ in range(10_000):  # would abort the interpreter on an unprotected PySide6 6.12 / Python 3.11
        probe.setObjectName("x")
