"""Secrets (the invite code with the swarm's join secret) in the system keyring, with a clear fallback.

When no keyring backend works (a headless Linux box without a Secret Service), secrets go to a file readable only
by this user in the config folder, and `where` says so, so the settings window can tell the owner.
They reach the node through its environment (`node_environment`), never its command line.
"""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path

SERVICE_NAME = "potluck"


class SecretKey(str, enum.Enum):
    INVITE_CODE = "invite_code"  # the code this PC joined with (holds the join secret)


ENV_FOR_SECRET = {SecretKey.INVITE_CODE: "POTLUCK_INVITE_CODE"}


class SecretStore:
    """get/set/delete by `SecretKey`. `fallback_file` is used only when the keyring refuses."""

    def __init__(self, fallback_file: Path, keyring_module=None) -> None:
        self._fallback_file = fallback_file
        self._keyring = keyring_module
        self.where = "system keyring"

    def _ring(self):
        if self._keyring is None:
            import keyring  # light, but only needed when a secret is touched

            self._keyring = keyring
        return self._keyring

    def get(self, key: SecretKey) -> str | None:
        try:
            value = self._ring().get_password(SERVICE_NAME, key.value)
        except Exception:  # keyring backends raise their own error types; any failure means "use the file"
            value = None
        if value is None:
            value = self._read_file().get(key.value)
        return value

    def set(self, key: SecretKey, value: str) -> None:
        try:
            self._ring().set_password(SERVICE_NAME, key.value, value)
            self.where = "system keyring"
            return
        except Exception:
            pass
        data = self._read_file()
        data[key.value] = value
        self._write_file(data)
        self.where = f"private file {self._fallback_file} (no system keyring available)"

    def delete(self, key: SecretKey) -> None:
        try:
            self._ring().delete_password(SERVICE_NAME, key.value)
        except Exception:
            pass
        data = self._read_file()
        if data.pop(key.value, None) is not None:
            self._write_file(data)

    def node_environment(self) -> dict[str, str]:
        """POTLUCK_* variables holding the secrets the node needs."""
        env = {}
        for key, name in ENV_FOR_SECRET.items():
            value = self.get(key)
            if value:
                env[name] = value
        return env

    def _read_file(self) -> dict[str, str]:
        try:
            data = json.loads(self._fallback_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}

    def _write_file(self, data: dict[str, str]) -> None:
        self._fallback_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._fallback_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
