"""The app's settings: a frozen record, its keys as an enum, and JSON load/save in the config folder.

UI state (window sizes, the chat's sampling settings) lives in QSettings instead (see `ui_state.py`); secrets
(the invite code, which carries the swarm's join secret) live in core/secrets.py: the system keyring when one
works, else a private file (see `secrets_store.py`).
"""

from __future__ import annotations

import enum
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from potluck.core.model.catalog import PRECISIONS as QUANTS
from potluck.core.node.rules import RulesError, parse_rules

CONFIG_VERSION = 1


class ConfigError(ValueError):
    """The settings file or a value in it is invalid; the message says which."""


class SwarmMode(str, enum.Enum):
    CREATE = "create"  # this PC started the swarm
    JOIN = "join"  # this PC joined with an invite code


class ConfigKey(str, enum.Enum):
    MODE = "mode"
    MODEL = "model"
    SWARM_NAME = "swarm_name"
    SWARM_ID = "swarm_id"
    PC_NAME = "pc_name"
    MEMORY_CAP_GIB = "memory_cap_gib"
    START_ON_LOGIN = "start_on_login"
    LOG_DIR = "log_dir"
    RULES = "rules"
    API_ENABLED = "api_enabled"
    API_PORT = "api_port"
    QUANT = "quant"


@dataclass(frozen=True)
class AppConfig:
    mode: SwarmMode
    model: str = ""  # Hugging Face id ("org/name") or a local folder; empty when joining (the invite names it)
    swarm_name: str = ""
    swarm_id: str = ""  # the swarm the node serves (16 hex), once known; "" = by name (create) or by the code (join)
    pc_name: str = ""  # how friends see this PC
    memory_cap_gib: float = 0.0  # most memory the node may use for blocks, GiB; 0 = decide from free memory
    start_on_login: bool = False
    log_dir: str = ""  # empty = the platform's log folder
    rules: dict = field(default_factory=dict)  # serving rules, as core/node/rules.parse_rules reads them
    api_enabled: bool = False  # "Let apps on this PC use the swarm": an OpenAI-style API on 127.0.0.1
    api_port: int = 8000
    quant: str = "none"  # the weight precision of a swarm this PC starts: none (the checkpoint's own), int8, int4

    def __post_init__(self) -> None:
        if not isinstance(self.mode, SwarmMode):
            raise ConfigError(f"mode must be one of {[m.value for m in SwarmMode]}")
        if self.mode is SwarmMode.CREATE and not self.model.strip():
            raise ConfigError("a new swarm needs a model (a Hugging Face id or a local folder)")
        if not (math.isfinite(self.memory_cap_gib) and 0 <= self.memory_cap_gib <= 4096):
            raise ConfigError("memory cap must be between 0 (automatic) and 4096 GiB")
        if len(self.pc_name) > 64 or len(self.swarm_name) > 64:
            raise ConfigError("names must be at most 64 characters")
        if self.swarm_id and (len(self.swarm_id) != 16 or any(c not in "0123456789abcdef" for c in self.swarm_id)):
            raise ConfigError("swarm_id must be 16 lowercase hex characters")
        try:
            parse_rules(self.rules)
        except RulesError as exc:
            raise ConfigError(f"serving rules: {exc}") from None
        if self.quant not in QUANTS:
            raise ConfigError(f"precision must be one of {', '.join(QUANTS)}")
        if isinstance(self.api_port, bool) or not isinstance(self.api_port, int) or not 0 < self.api_port < 65536:
            raise ConfigError("the API port must be a number from 1 to 65535")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data[ConfigKey.MODE.value] = self.mode.value
        data["config_version"] = CONFIG_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AppConfig":
        if not isinstance(data, dict):
            raise ConfigError("settings must be a JSON object")
        try:
            mode = SwarmMode(data.get(ConfigKey.MODE.value))
        except ValueError:
            raise ConfigError(f"unknown mode {data.get(ConfigKey.MODE.value)!r}") from None
        kwargs: dict[str, Any] = {}
        for key, kind in (
            (ConfigKey.MODEL, str), (ConfigKey.SWARM_NAME, str), (ConfigKey.SWARM_ID, str), (ConfigKey.PC_NAME, str),
            (ConfigKey.MEMORY_CAP_GIB, float), (ConfigKey.START_ON_LOGIN, bool), (ConfigKey.LOG_DIR, str),
            (ConfigKey.RULES, dict), (ConfigKey.API_ENABLED, bool), (ConfigKey.API_PORT, int),
            (ConfigKey.QUANT, str),
        ):
            if key.value not in data:
                continue
            value = data[key.value]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ConfigError(f"{key.value} must be a {kind.__name__}")
            kwargs[key.value] = value
        return cls(mode=mode, **kwargs)

    def with_values(self, **changes: Any) -> "AppConfig":
        return replace(self, **changes)

    def node_values(self, default_log_dir: Path) -> dict[str, Any]:
        """What the node needs to know, as sent in a set_config command (units in names)."""
        return {
            "mode": self.mode.value,
            "model": self.model,
            "swarm_name": self.swarm_name,
            "swarm_id": self.swarm_id,
            "pc_name": self.pc_name,
            "memory_cap_bytes": int(self.memory_cap_gib * 2**30),
            "log_dir": self.log_dir or str(default_log_dir),
            "rules": dict(self.rules),
            "api_enabled": self.api_enabled,
            "api_port": self.api_port,
            "quant": self.quant,
        }


def load_config(path: Path) -> AppConfig | None:
    """The saved settings, or None when there are none yet (first run). Raises ConfigError on a broken file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    return AppConfig.from_dict(data)


def save_config(path: Path, config: AppConfig) -> None:
    """Write atomically: a crash mid-write leaves the old file, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".app-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            json.dump(config.to_dict(), tmp, indent=2, sort_keys=True)
            tmp.write("\n")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
