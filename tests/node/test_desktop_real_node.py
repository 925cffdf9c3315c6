"""End to end on a real X server (Xvfb) with a real system tray (trayer) and the REAL node on a tiny model.

Skips, saying why, without Xvfb, trayer, xdotool and ImageMagick (the fixture comes from tests/app). Screenshots go
to the test's folder; set APP_SCREENSHOTS_DIR to also copy them there (docs/screenshots/ holds
dashboard-real-node.png and chat-real-node.png).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from potluck.app.config_store import AppConfig, SwarmMode, save_config
from tests.app.test_xvfb_desktop import x_display  # noqa: F401  (Xvfb + trayer, or a skip saying what is missing)

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "xvfb_real_node_driver.py"


def desktop_environment(tmp_path: Path, display: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "QT_QPA", "POTLUCK_"))}
    env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", HOME=str(tmp_path / "home"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
               POTLUCK_HOST="127.0.0.1")  # no tailnet here: the node would say so and use loopback anyway
    return env


@pytest.mark.slow
def test_tray_pause_resume_and_chat_with_the_real_node(x_display, tmp_path, tiny_model):  # noqa: F811
    save_config(tmp_path / "config" / "Potluck" / "app.json",
                AppConfig(mode=SwarmMode.CREATE, model=tiny_model, swarm_name="Friday night", pc_name="Sam's desktop"))
    shots = tmp_path / "shots"
    result = subprocess.run([sys.executable, str(DRIVER), str(shots)], cwd=REPO, capture_output=True, text=True,
                            env=desktop_environment(tmp_path, x_display), timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["tray_available"] and seen["icon_visible"] and seen["icon_width"] > 0 and seen["icon_colors"] > 3
    assert seen["icon_is_serving"] and seen["icon_is_paused"]
    assert seen["status_serving"] == "Serving blocks 0–3 of 4 · no friends online yet"
    assert seen["menu_serving"][:2] == ["status", "pause"] and seen["menu_paused"][:2] == ["status", "resume"]
    assert seen["states_after_pause"] == ["draining", "paused"]
    assert seen["status_paused"] == "Paused · no friends online yet"
    assert seen["states_after_resume"][0] == "starting" and seen["states_after_resume"][-1] == "serving"
    assert seen["tokens_streamed"] > 1 and seen["reply"].startswith(seen["streamed_text"]) and seen["reply"].strip()
    assert "tokens/s" in seen["reply_caption"] and "Sam's desktop" in seen["reply_caption"]
    assert seen["self_listed"] and seen["members"][0] == ["Sam's desktop", "online", True]
    assert seen["coverage"] == [1, 1, 1, 1] and seen["tokens_used"] >= seen["tokens_streamed"]
    assert seen["tokens_served"] > 0 and seen["stopped"] is True
    assert {"chat-real-node.png", "dashboard-real-node.png"} <= {p.name for p in shots.iterdir()}
    target = os.environ.get("APP_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in shots.iterdir():
            shutil.copy(path, Path(target) / path.name)
