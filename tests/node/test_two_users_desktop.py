"""Two new users on two "PCs" (two POTLUCK_HOME folders, two Xvfb displays with a real tray each), the real app and
the real node serving the built-in model (SmolLM2-135M-Instruct as a .gguf): Ana creates a swarm in the wizard,
makes a code on the swarm page (refused while no friend could use it, then "this PC only": there is no tailnet
here), Ben joins with it in the wizard, both see each other, Ben chats, Ana removes Ben, Ben's app says so and
takes a new code on the swarm page. tests/node/walk_driver.py drives each PC; screenshots go to the test's
folder (and to APP_SCREENSHOTS_DIR when set)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from potluck.core.model import builtin
from tests.app.test_xvfb_desktop import x_server

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "walk_driver.py"


def pc_environment(home: Path, display: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "QT_QPA", "POTLUCK_"))}
    env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", HOME=str(home / "home"), POTLUCK_HOME=str(home),
               XDG_CONFIG_HOME=str(home / "xdg-config"), XDG_STATE_HOME=str(home / "xdg-state"),
               XDG_DATA_HOME=str(home / "xdg-data"), XDG_CACHE_HOME=str(home / "xdg-cache"),
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
               POTLUCK_HOST="127.0.0.1")  # no tailnet on this machine: both friends listen on loopback
    return env


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_two_new_users_create_invite_join_chat_remove_and_come_back(tmp_path):
    builtin.builtin_model_path()  # `make setup` installs it; missing, this fails saying how to install it
    shared, shots = tmp_path / "shared", tmp_path / "shots"
    shared.mkdir()
    with contextlib.ExitStack() as stack:
        displays = [stack.enter_context(x_server()) for _pc in range(2)]
        runs = {who: subprocess.Popen([sys.executable, str(DRIVER), who, str(shared), str(shots)], cwd=REPO,
                                      env=pc_environment(tmp_path / who, display), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
                for who, display in zip(("ana", "ben"), displays)}
        outputs = {who: run.communicate(timeout=3600) for who, run in runs.items()}
    seen = {}
    for who, (out, err) in outputs.items():
        assert runs[who].returncode == 0, f"{who}: {out[-4000:]}\n{err[-4000:]}"
        seen.update(json.loads(out.strip().splitlines()[-1]))
    (tmp_path / "seen.json").write_text(json.dumps(seen, indent=1))
    assert seen["ana_tailscale"].startswith("Friends cannot reach this PC yet")
    assert "127.0.0.1 only" in seen["code1_refused"] and "this PC only" in seen["code1_details"]
    assert seen["code1_copied_matches"] and seen["ana_ready"][0].endswith("Ready</span>")
    assert seen["ben_code_feedback"].startswith("Valid code for the swarm “Friday night”")
    assert seen["ana_sees"] == ["Ana's PC", "Ben's PC"] and seen["ben_sees"] == ["Ana's PC", "Ben's PC"]
    assert "Paris" in seen["ben_reply"][0] and "tokens/s" in seen["ben_reply"][1]
    assert seen["ana_removed"].startswith("Ben's PC was removed")
    assert "removed from the swarm “Friday night”" in seen["ben_told"][0] and seen["ben_banner"]
    assert "Enter another invite code…" in seen["ben_menu"]
    assert seen["ben_rejoined"] == "Joined “Friday night”."
    target = os.environ.get("APP_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in shots.iterdir():
            shutil.copy(path, Path(target) / path.name)
