"""Start on login: the entries' contents (pure) and writing/removing them for each platform."""

from __future__ import annotations

import plistlib

from PySide6.QtCore import QSettings

from potluck.app.autostart import Autostart, gui_command, linux_desktop_entry, macos_launch_agent, windows_run_value
from potluck.app.paths import linux_autostart_dir

COMMAND = ["/opt/Potluck/potluck"]


def test_linux_entry_quotes_arguments_and_sets_the_folder():
    text = linux_desktop_entry(["/usr/bin/python3", "-m", "potluck.app.entry", "my dir", "100%"], working_dir="/src/potluck")
    assert 'Exec=/usr/bin/python3 -m potluck.app.entry "my dir" "100%%"' in text.splitlines()
    assert "Path=/src/potluck" in text.splitlines()
    assert text.startswith("[Desktop Entry]\nType=Application\n")


def test_macos_agent_runs_at_load():
    agent = plistlib.loads(macos_launch_agent(COMMAND, "/Applications"))
    assert agent["ProgramArguments"] == COMMAND and agent["RunAtLoad"] is True
    assert agent["WorkingDirectory"] == "/Applications"


def test_windows_value_is_one_quoted_command_line():
    assert windows_run_value([r"C:\Program Files\Potluck\potluck.exe"]) == r'"C:\Program Files\Potluck\potluck.exe"'


def test_gui_command():
    assert gui_command(frozen=True, executable="/opt/p") == (["/opt/p"], None)
    command, folder = gui_command(frozen=False, executable="/py")
    assert command == ["/py", "-m", "potluck.app.entry"] and folder is not None


def test_linux_writes_and_removes_the_xdg_autostart_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    autostart = Autostart(COMMAND, platform="linux")
    assert not autostart.is_enabled()
    autostart.set_enabled(True)
    path = tmp_path / "cfg" / "autostart" / "potluck.desktop"
    assert linux_autostart_dir() == path.parent and path.is_file()
    assert "Exec=/opt/Potluck/potluck" in path.read_text()
    assert autostart.is_enabled()
    autostart.set_enabled(False)
    assert not path.exists() and not autostart.is_enabled()


def test_macos_writes_a_launch_agent(tmp_path):
    autostart = Autostart(COMMAND, platform="darwin", macos_dir=lambda: tmp_path / "LaunchAgents")
    autostart.set_enabled(True)
    assert plistlib.loads((tmp_path / "LaunchAgents" / "org.potluck.app.plist").read_bytes())["Label"] == "org.potluck.app"
    autostart.set_enabled(False)
    assert not autostart.is_enabled()


def test_windows_uses_the_run_key_through_qsettings(tmp_path):
    ini = str(tmp_path / "run.ini")  # stands in for the registry key: same QSettings calls
    autostart = Autostart([r"C:\P\potluck.exe"], platform="win32",
                          windows_settings=lambda: QSettings(ini, QSettings.Format.IniFormat))
    autostart.set_enabled(True)
    assert QSettings(ini, QSettings.Format.IniFormat).value("Potluck") == r"C:\P\potluck.exe"
    assert autostart.is_enabled()
    autostart.set_enabled(False)
    assert not autostart.is_enabled()
