"""Secrets at rest (swarm secrets by swarm id, and the app's own, such as the invite code it joined with): the OS
keyring when one works, else a file only this user can read. The one place Potluck keeps secrets.

Every call says where the secret went or came from (`SecretLocation`, printed as "keyring" or "file:/path"), so
the CLI and the app can tell the user. Secrets never appear in exceptions, logs or reprs.

A keyring counts as usable unless it is keyring's `fail` or `null` backend, a chainer with nothing to chain, or
it raises. A write to the keyring is read back before it is trusted; if any of that fails, the secret goes to
`<config dir>/secrets/<name>.key`, created with mode 0600 in a 0700 folder (on POSIX; on Windows the user's
profile folder is already private). Loading looks in the keyring first, then in that file.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from potluck.core import paths
from potluck.core.errors import PotluckError

logger = logging.getLogger(__name__)

KEYRING_SERVICE = "Potluck swarm"  # keyring "service"; the swarm id (or the secret's name) is the "username"
_SWARM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # also makes it safe as a file name


class SecretStoreError(PotluckError, RuntimeError):
    """A secret could not be stored or read; the message says what to do."""


class SecretNotFound(SecretStoreError):
    """No secret is stored for this swarm id."""


@dataclass(frozen=True)
class SecretLocation:
    kind: Literal["keyring", "file"]
    path: Path | None = None  # the file, when kind == "file"

    def __str__(self) -> str:
        return "keyring" if self.kind == "keyring" else f"file:{self.path}"


def keyring_usable() -> bool:
    """True if `keyring` has a real backend (not fail/null, not an empty chainer)."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null

        backend = keyring.get_keyring()
        if isinstance(backend, (fail.Keyring, null.Keyring)):
            return False
        if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
            return False
        return True
    except Exception as e:  # a broken backend (e.g. no D-Bus session) can raise anything
        logger.debug("keyring unusable: %s", type(e).__name__)
        return False


def where_secrets_go() -> SecretLocation | None:
    """Where a secret stored now would go: the keyring if it is usable, else None (a private file per secret)."""
    return SecretLocation("keyring") if keyring_usable() else None


def secret_file_path(swarm_id: str) -> Path:
    """Where the fallback file for `swarm_id` lives (whether or not it exists)."""
    _check_swarm_id(swarm_id)
    return paths.config_dir() / "secrets" / f"{swarm_id}.key"


def store_secret(swarm_id: str, secret: bytes, *, use_keyring: bool = True) -> SecretLocation:
    """Store `secret` for `swarm_id`, replacing any previous one. Returns where it went."""
    _check_swarm_id(swarm_id)
    if not isinstance(secret, bytes) or not 16 <= len(secret) <= 1024:
        raise SecretStoreError("a secret must be 16 to 1024 bytes")
    text = base64.urlsafe_b64encode(secret).decode("ascii")
    if use_keyring and _keyring_store(swarm_id, text):
        _remove_file(secret_file_path(swarm_id))  # no stale second copy
        return SecretLocation("keyring")
    path = secret_file_path(swarm_id)
    _write_private_file(path, text)
    return SecretLocation("file", path)


def load_secret(swarm_id: str) -> tuple[bytes, SecretLocation]:
    """The secret for `swarm_id` (or another name) and where it was found. Raises SecretNotFound or SecretStoreError."""
    _check_swarm_id(swarm_id)
    if keyring_usable():
        try:
            import keyring

            text = keyring.get_password(KEYRING_SERVICE, swarm_id)
        except Exception as e:
            logger.warning("could not read the keyring (%s); trying the secret file", type(e).__name__)
            text = None
        if text is not None:
            return _decode(text, "the keyring"), SecretLocation("keyring")
    path = secret_file_path(swarm_id)
    try:
        text = _read_private_file(path)
    except FileNotFoundError:
        raise SecretNotFound(f"no secret is stored for swarm {swarm_id} (looked in the keyring and {path})") from None
    return _decode(text, str(path)), SecretLocation("file", path)


def delete_secret(swarm_id: str) -> list[SecretLocation]:
    """Remove the secret from the keyring and the file; returns the places it was removed from."""
    _check_swarm_id(swarm_id)
    removed = []
    if keyring_usable():
        try:
            import keyring

            if keyring.get_password(KEYRING_SERVICE, swarm_id) is not None:
                keyring.delete_password(KEYRING_SERVICE, swarm_id)
                removed.append(SecretLocation("keyring"))
        except Exception as e:
            logger.warning("could not delete from the keyring (%s)", type(e).__name__)
    path = secret_file_path(swarm_id)
    if _remove_file(path):
        removed.append(SecretLocation("file", path))
    return removed


def _check_swarm_id(swarm_id: str) -> None:
    if not isinstance(swarm_id, str) or not _SWARM_ID.fullmatch(swarm_id):
        raise SecretStoreError(f"invalid secret name {swarm_id!r}: letters, digits, '-' and '_' only")


def _keyring_store(swarm_id: str, text: str) -> bool:
    if not keyring_usable():
        return False
    try:
        import keyring

        keyring.set_password(KEYRING_SERVICE, swarm_id, text)
        if keyring.get_password(KEYRING_SERVICE, swarm_id) == text:
            return True
        logger.warning("the keyring did not keep the secret; using a private file instead")
    except Exception as e:
        logger.warning("could not write to the keyring (%s); using a private file instead", type(e).__name__)
    return False


def _decode(text: str, where: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise SecretStoreError(f"the secret in {where} is damaged; remove it (leave the swarm) and join again") from None


def _write_private_file(path: Path, text: str) -> None:
    paths.ensure_dir(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)  # mkstemp creates it with mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_file(Path(tmp))
        raise


def _read_private_file(path: Path) -> str:
    if sys.platform != "win32":
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretStoreError(f"{path} can be read by other users; run: chmod 600 '{path}'")
    return path.read_text(encoding="ascii")


def _remove_file(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
