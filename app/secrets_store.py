"""The app's secrets (the invite code this PC joined with, which holds the join credential), kept by
core/secrets.py: the system keyring when one really works, else a file only this user can read; `where` says
which, in words the settings window shows. They reach the node through its environment (`node_environment`),
never its command line.
"""

from __future__ import annotations

import enum

from potluck.core import secrets

ENCODING = "utf-8"


class SecretKey(str, enum.Enum):
    INVITE_CODE = "invite_code"  # the code this PC joined with (holds the join secret)


ENV_FOR_SECRET = {SecretKey.INVITE_CODE: "POTLUCK_INVITE_CODE"}


class SecretStore:
    """get/set/delete by `SecretKey`."""

    def get(self, key: SecretKey) -> str | None:
        try:
            secret, _location = secrets.load_secret(key.value)
        except secrets.SecretNotFound:
            return None
        return secret.decode(ENCODING, errors="replace")

    def set(self, key: SecretKey, value: str) -> secrets.SecretLocation:
        return secrets.store_secret(key.value, value.encode(ENCODING))

    def delete(self, key: SecretKey) -> None:
        secrets.delete_secret(key.value)

    @property
    def where(self) -> str:
        """Where secrets stored now go, for the owner: 'the system keyring' or 'a private file (…)'."""
        if secrets.where_secrets_go() is not None:
            return "the system keyring"
        folder = secrets.secret_file_path(SecretKey.INVITE_CODE.value).parent
        return f"a private file in {folder} (this PC has no working system keyring)"

    def node_environment(self) -> dict[str, str]:
        """POTLUCK_* variables holding the secrets the node needs."""
        env = {}
        for key, name in ENV_FOR_SECRET.items():
            value = self.get(key)
            if value:
                env[name] = value
        return env
