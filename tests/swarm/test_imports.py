"""The GUI-facing modules stay light: no hivemind/torch/transformers, no keyring/platformdirs work at import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIGHT = ["potluck.core.swarm.invite", "potluck.core.swarm.tailscale", "potluck.core.swarm.store", "potluck.core.swarm.membership", "potluck.core.secrets",
         "potluck.core.paths"]
HEAVY = ["hivemind", "torch", "transformers", "keyring", "platformdirs"]


@pytest.mark.parametrize("module", LIGHT)
def test_importing_loads_nothing_heavy_and_touches_no_files(module, tmp_path):
    code = (f"import sys, {module}; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    env = {"POTLUCK_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    assert not (tmp_path / "home").exists()


MINE = ["core/swarm/invite.py", "core/swarm/tailscale.py", "core/swarm/admission.py", "core/swarm/membership.py",
        "core/swarm/store.py", "core/secrets.py", "core/paths.py"]


@pytest.mark.parametrize("path", MINE)
def test_files_stay_readable(path):
    assert len((ROOT / path).read_text().splitlines()) <= 400
