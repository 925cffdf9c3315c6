"""End to end on a real X server (Xvfb) with a real system tray (trayer), against the fake node.

Skips, saying why, when Xvfb is not installed (apt-get install xvfb trayer xdotool imagemagick and the xcb libraries
listed in /work/shared/TESTING.md). Screenshots go to the test's folder; set APP_SCREENSHOTS_DIR to also copy
them there (that is how docs/screenshots/ is refreshed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from potluck.app.config_store import AppConfig, SwarmMode, save_config
from tests.app.node_records import launches

REPO = Path(__file__).resolve().parents[2]
FAKE_NODE = Path(__file__).resolve().parent / "fake_node.py"
DRIVER = Path(__file__).resolve().parent / "xvfb_driver.py"
NEEDED = ("Xvfb", "trayer", "xdotool", "import")


def _missing_tools() -> list[str]:
    return [tool for tool in NEEDED if shutil.which(tool) is None]


def _free_display() -> int:
    for number in range(91, 200):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError("no free X display number")


def _wait_for(what: str, predicate, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def x_server():
    """A fresh Xvfb display with trayer as its system tray; yields its name (":91"). Skips without the tools."""
    missing = _missing_tools()
    if missing:
        message = f"needs {', '.join(missing)} (apt-get install xvfb trayer xdotool imagemagick)"
        print(f"SKIP: {message}")
        pytest.skip(message)
    number = _free_display()
    display = f":{number}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trayer = None
    try:
        env = {**os.environ, "DISPLAY": display}
        _wait_for("Xvfb to accept clients", lambda: subprocess.run(["xdotool", "getdisplaygeometry"], env=env,
                                                                   capture_output=True).returncode == 0)
        for _attempt in range(3):  # trayer gives up at once if the display was not quite ready
            trayer = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width",
                                       "200", "--height", "32"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            try:
                _wait_for("trayer", lambda t=trayer: t.poll() is not None or subprocess.run(
                    ["xdotool", "search", "--classname", "trayer"], env=env, capture_output=True).returncode == 0)
            except TimeoutError:
                trayer.kill()
                raise
            if trayer.poll() is None:
                break
        yield display
    finally:
        for process in (trayer, xvfb):
            if process is not None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


@pytest.fixture(scope="module")
def x_display():
    with x_server() as display:
        yield display


def app_environment(tmp_path: Path, display: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "QT_QPA", "POTLUCK_"))}
    env.update(
        DISPLAY=display, QT_QPA_PLATFORM="xcb", HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"),
        POTLUCK_NODE_COMMAND=f"{sys.executable} {FAKE_NODE}", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        FAKE_NODE_RECORD=str(tmp_path / "record.jsonl"),
    )
    env.update(extra)
    save_config(tmp_path / "config" / "Potluck" / "app.json",
                AppConfig(mode=SwarmMode.CREATE, model="org/tiny-demo", swarm_name="Friday night", pc_name="Sam's desktop"))
    return env


def test_tray_pause_resume_chat_and_screenshots_on_a_real_display(x_display, tmp_path):
    shots = tmp_path / "shots"
    reply = ("A potluck is a meal where every guest brings a dish. Here every friend's PC brings a few blocks "
             "of the model, and together they answer.")
    env = app_environment(tmp_path, x_display, FAKE_NODE_REPLY=reply, FAKE_NODE_TOKEN_DELAY_S="0.02")
    result = subprocess.run([sys.executable, str(DRIVER), str(shots)], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["tray_available"] is True
    assert seen["icon_visible"] is True and seen["icon_geometry"][2] > 0 and seen["icon_colors"] > 3
    assert seen["icon_is_serving"] and seen["icon_is_paused"]
    assert seen["status_serving"] == "Serving blocks 12–23 of 32 · 2 friends online"
    assert seen["menu_serving"][:2] == ["status", "pause"] and seen["menu_paused"][:2] == ["status", "resume"]
    assert seen["states_after_pause"] == ["draining", "paused"]
    assert seen["status_paused"] == "Paused · 2 friends online"
    assert seen["states_after_resume"] == ["starting", "serving"]
    assert seen["reply"] == reply and "tokens/s" in seen["reply_caption"]
    assert seen["wizard_bad_code"].startswith("This code is incomplete")
    assert seen["settings_model_read_only"] is True
    assert seen["swarm_rows"][0] == ["Sam's desktop (this PC)", "Owner", "Serving", "12–23", "now"]
    assert seen["invite_code"].startswith("potluck-") and seen["clipboard"] == seen["invite_code"]
    assert "100.101.1.7" in seen["invite_details"] and "one join" in seen["invite_details"] and seen["invite_qr"]
    assert seen["join_copy"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and seen["join_enabled"]
    assert seen["wizard_tailscale"] == "Friends cannot reach this PC yet: Tailscale is not ready here."
    assert "Ready" in seen["wizard_ready_title"]
    title, why, back = seen["wizard_failed"]
    assert "Not ready" in title and "already been used" in why and back is True
    assert seen["wizard_good_code"] == "Valid code for the swarm “Friday night” · model Qwen/Qwen2.5-72B-Instruct"
    assert seen["stopped"] is True
    names = {p.name for p in shots.iterdir()}
    assert {"tray-menu.png", "dashboard.png", "chat.png", "wizard-welcome.png", "wizard-join-error.png",
            "wizard-join.png", "wizard-ready.png", "settings.png", "swarm.png", "swarm-invite.png", "swarm-join.png",
            "wizard-create.png", "wizard-failed.png"} <= names
    target = os.environ.get("APP_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in shots.iterdir():
            shutil.copy(path, Path(target) / path.name)


def _visible_window(display: str, title: str) -> bool:
    found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", title], env={**os.environ, "DISPLAY": display},
                           capture_output=True, text=True)
    return found.returncode == 0 and bool(found.stdout.strip())


def test_the_real_program_is_single_instance_and_stops_its_node_on_sigterm(x_display, tmp_path):
    env = app_environment(tmp_path, x_display)
    record = tmp_path / "record.jsonl"
    first = subprocess.Popen([sys.executable, "-m", "potluck.app.entry"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for("the node to start", lambda: launches(record) and "start" in record.read_text())
        assert not _visible_window(x_display, "Potluck — Dashboard")  # tray-first: no window on start
        second = subprocess.run([sys.executable, "-m", "potluck.app.entry"], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        _wait_for("the first instance to show its dashboard", lambda: _visible_window(x_display, "Potluck — Dashboard"))
        assert len(launches(record)) == 1  # the second launch started no node
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    node_pid = launches(record)[0]["pid"]
    _wait_for("the node to exit", lambda: not Path(f"/proc/{node_pid}").exists() or
              "zombie" in Path(f"/proc/{node_pid}/status").read_text().lower(), seconds=10)
    assert '"command": "{\\"v\\":1,\\"kind\\":\\"shutdown\\"}"' in record.read_text()
