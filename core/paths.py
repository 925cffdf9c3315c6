"""Where Potluck keeps its files: per-user config, data, cache and log folders.

Every function computes its answer when called (nothing at import time) and creates nothing; callers that write
use `ensure_dir`. Setting the environment variable POTLUCK_HOME puts all four folders under one directory
(`$POTLUCK_HOME/config`, `/data`, `/cache`, `/logs`): tests and portable installs use it.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "Potluck"
HOME_ENV = "POTLUCK_HOME"  # overrides every folder below when set to a non-empty path


def _override(kind: str) -> Path | None:
    home = os.environ.get(HOME_ENV, "").strip()
    return Path(home).expanduser() / kind if home else None


def config_dir() -> Path:
    """Settings, the list of known swarms, the secret fallback file (~/.config/Potluck on Linux)."""
    import platformdirs

    return _override("config") or platformdirs.user_config_path(APP_NAME, appauthor=False)


def data_dir() -> Path:
    """Long-lived data: peer identities, downloaded model shards."""
    import platformdirs

    return _override("data") or platformdirs.user_data_path(APP_NAME, appauthor=False)


def cache_dir() -> Path:
    """Data that can be rebuilt: benchmarks, temporary downloads."""
    import platformdirs

    return _override("cache") or platformdirs.user_cache_path(APP_NAME, appauthor=False)


def logs_dir() -> Path:
    """Log files of the node process and the app."""
    import platformdirs

    return _override("logs") or platformdirs.user_log_path(APP_NAME, appauthor=False)


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` (and parents) readable only by this user if it does not exist; return it."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    return path
