"""Fixtures for the desktop app's tests: an offscreen Qt platform and NodeProcess objects driving fake_node.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

FAKE_NODE = Path(__file__).resolve().parent / "fake_node.py"


def pytest_configure(config) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before pytest-qt creates the QApplication
    from potluck.app.qt_compat import protect_singletons

    protect_singletons()  # the app does the same first thing in run_gui (PySide6 6.12 on Python 3.11)


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    """Point every per-user folder at the test's own, so no test reads or writes the real user's files."""
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / "xdg" / name.lower()))
    for name in [n for n in os.environ if n.startswith("POTLUCK_")]:  # no node command override, no secrets
        monkeypatch.delenv(name)


class FakeSizer:
    """Stands in for the engine process that sizes a typed model (`potluck models --model … --json`)."""

    def __init__(self):
        self.calls = []

    def __call__(self, model: str):
        from potluck.core.model.catalog import ModelSize

        self.calls.append(model)
        if "unsupported" in model:
            raise RuntimeError("model type 'bert' is not supported yet (supported: llama, mistral, qwen2)")
        return ModelSize(model, 32, {"none": 64 * 2**30, "int8": 34 * 2**30, "int4": 20 * 2**30}, "bfloat16")


@pytest.fixture(autouse=True)
def fake_sizer(monkeypatch) -> FakeSizer:
    """No test starts the real engine to size a typed model unless it asks to (tests/app/test_model_catalog.py)."""
    from potluck.app import model_catalog

    sizer = FakeSizer()
    monkeypatch.setattr(model_catalog, "size_from_engine", sizer)
    return sizer


@pytest.fixture
def fake_node_command() -> list[str]:
    return [sys.executable, str(FAKE_NODE), "node"]


@pytest.fixture
def make_node(qtbot, fake_node_command):
    """make_node(env={...}, **NodeProcess kwargs) -> a NodeProcess on the fake node, stopped after the test."""
    from potluck.app.node_command import NodeTimeouts, RestartPolicy
    from potluck.app.node_process import NodeProcess

    made = []

    def make(env: dict[str, str] | None = None, **kwargs):
        extra = dict(env or {})
        kwargs.setdefault("timeouts", NodeTimeouts(hello_ms=15_000, shutdown_ms=3_000, terminate_ms=3_000, kill_ms=3_000))
        kwargs.setdefault("restart_policy", RestartPolicy(first_delay_seconds=0.01, max_delay_seconds=0.05))
        node = NodeProcess(fake_node_command, environment=lambda: {**os.environ, **extra}, **kwargs)
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop_blocking()


@pytest.fixture
def ui_settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def icons():
    from potluck.app.icons import IconSet
    from potluck.app.paths import resources_dir

    return IconSet(resources_dir() / "icons")


@pytest.fixture
def serving_node(qtbot, make_node):
    """serving_node(env={...}) -> a NodeProcess on the fake node that has reached SERVING and sent its stats."""
    from potluck.core.protocol import NodeState

    def make(env: dict[str, str] | None = None, **kwargs):
        node = make_node(env, **kwargs)
        node.start()
        qtbot.waitUntil(lambda: node.state is NodeState.SERVING and node.last_stats is not None, timeout=15_000)
        return node

    return make


class MemoryKeyring(KeyringBackend):
    """A working keyring backend that keeps passwords in memory (the test's stand-in for the OS keyring)."""

    priority = 1

    def __init__(self):
        super().__init__()
        self.data = {}

    def get_password(self, service, key):
        return self.data.get((service, key))

    def set_password(self, service, key, value):
        self.data[(service, key)] = value

    def delete_password(self, service, key):
        self.data.pop((service, key), None)


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


@pytest.fixture
def no_keyring():
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)
