"""Issue 14 part 2 on a real X server with a real tray, against the fake node: loading progress, history charts,
Markdown chat with conversations, serving rules in Settings. Skips without Xvfb (see test_xvfb_desktop.py).
APP_SCREENSHOTS_DIR=docs/screenshots refreshes dashboard-loading.png, dashboard-history.png, chat-markdown.png and
settings-rules.png."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.app.test_xvfb_desktop import REPO, app_environment, x_display  # noqa: F401  (a fixture)

DRIVER = Path(__file__).resolve().parent / "xvfb_life_driver.py"
REPLY = ("From a terminal, ask your friend for an invite code, then:\n\n```bash\npotluck join CODE\npotluck serve "
         "--swarm \"Friday night\"\n```\n\nThe first command joins; the second serves **your share** of the blocks.")


def test_loading_history_markdown_chat_and_rules_on_a_real_display(x_display, tmp_path):  # noqa: F811
    shots = tmp_path / "shots"
    env = app_environment(tmp_path, x_display, FAKE_NODE_REPLY=REPLY, FAKE_NODE_TOKEN_DELAY_S="0.01",
                          FAKE_NODE_LOAD_DELAY_S="0.4")
    result = subprocess.run([sys.executable, str(DRIVER), str(shots)], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["loading_words"].startswith("Loading blocks: ") and "GiB of 7.8 GiB" in seen["loading_words"]
    assert seen["cards"]["gave_used"] == ["41,870 / 12,940", "you gave 3.2× what you used"]
    assert seen["cards"]["throughput"] == ["6.4", "tokens per second, last minute"]
    assert seen["members"][-1][0] == "Cho's laptop" and seen["members"][-1][3].endswith("ago")
    assert seen["history_empty_shown"] is False and seen["gave_used_days"] == 14
    assert seen["code_blocks"] == ['potluck join CODE\npotluck serve --swarm "Friday night"']
    assert seen["clipboard"] == seen["code_blocks"][0]
    assert seen["conversations"] == ["How do I join a friend's swarm from a terminal?", "What is a potluck?"]
    assert seen["regenerate_visible"] is True
    assert seen["schedule_words"] == "Serves Mon–Fri 18:00–08:00."
    assert seen["saved_rules"]["idle_minutes"] == 10 and seen["saved_rules"]["monthly_upload_cap_bytes"] == 50 * 2**30
    names = {p.name for p in shots.iterdir()}
    assert {"dashboard-loading.png", "dashboard-history.png", "chat-markdown.png", "settings-rules.png"} <= names
    target = os.environ.get("APP_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in shots.iterdir():
            shutil.copy(path, Path(target) / path.name)
