"""Swarm secrets in a keyring or a private file, and the per-user folders."""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path

import keyring
import pytest
from keyring.backends import chainer, null

from potluck.core import paths
from potluck.core import secrets as sec
from potluck.core.secrets import SecretLocation, SecretNotFound, SecretStoreError

from .conftest import FileKeyring

SWARM = "5c0ffee15a1ad000"
SECRET = bytes(range(32))
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


def test_keyring_backend_is_used_when_it_works(potluck_home, file_keyring):
    where = sec.store_secret(SWARM, SECRET)
    assert where == SecretLocation("keyring") and str(where) == "keyring"
    assert file_keyring.get_password(sec.KEYRING_SERVICE, SWARM) is not None
    assert not sec.secret_file_path(SWARM).exists()
    assert sec.load_secret(SWARM) == (SECRET, SecretLocation("keyring"))
    assert sec.delete_secret(SWARM) == [SecretLocation("keyring")]
    with pytest.raises(SecretNotFound):
        sec.load_secret(SWARM)


class RaisingKeyring(FileKeyring):
    def set_password(self, service, username, password):
        raise keyring.errors.PasswordSetError("locked")

    def get_password(self, service, username):
        raise RuntimeError("no D-Bus session")


class ForgetfulKeyring(FileKeyring):
    def set_password(self, service, username, password):
        pass


class EmptyChainer(chainer.ChainerBackend):
    backends = []


@pytest.mark.parametrize("backend", [
    pytest.param(lambda: keyring.backends.fail.Keyring(), id="fail backend"),
    pytest.param(lambda: null.Keyring(), id="null backend"),
    pytest.param(lambda: EmptyChainer(), id="chainer with nothing to chain"),
    pytest.param(lambda: RaisingKeyring(), id="backend that raises"),
    pytest.param(lambda: ForgetfulKeyring(), id="backend that does not keep it"),
])
def test_fallback_file_when_no_usable_keyring(potluck_home, use_keyring, backend):
    use_keyring(backend())
    where = sec.store_secret(SWARM, SECRET)
    expected = potluck_home / "config" / "secrets" / f"{SWARM}.key"
    assert where == SecretLocation("file", expected) and str(where) == f"file:{expected}"
    assert sec.load_secret(SWARM) == (SECRET, where)
    assert sec.delete_secret(SWARM) == [where]
    assert not expected.exists()


@posix_only
def test_fallback_file_is_private(potluck_home, no_keyring):
    path = sec.store_secret(SWARM, SECRET).path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


@posix_only
def test_a_file_others_can_read_is_refused(potluck_home, no_keyring):
    path = sec.store_secret(SWARM, SECRET).path
    os.chmod(path, 0o644)
    with pytest.raises(SecretStoreError, match="chmod 600"):
        sec.load_secret(SWARM)


def test_file_written_without_keyring_is_found_once_a_keyring_exists(potluck_home, use_keyring, tmp_path):
    use_keyring(keyring.backends.fail.Keyring())
    where = sec.store_secret(SWARM, SECRET)
    use_keyring(FileKeyring(tmp_path / "kr.json"))
    assert sec.load_secret(SWARM) == (SECRET, where)
    assert sec.store_secret(SWARM, SECRET) == SecretLocation("keyring")  # moved: the file copy is removed
    assert not where.path.exists()


def test_store_replaces_and_swarms_are_separate(potluck_home, file_keyring):
    sec.store_secret(SWARM, SECRET)
    sec.store_secret(SWARM, b"n" * 32)
    sec.store_secret("0000000000000000", b"o" * 32)
    assert sec.load_secret(SWARM)[0] == b"n" * 32
    assert sec.load_secret("0000000000000000")[0] == b"o" * 32


def test_use_keyring_false_forces_the_file(potluck_home, file_keyring):
    assert sec.store_secret(SWARM, SECRET, use_keyring=False).kind == "file"


@pytest.mark.parametrize("swarm_id", ["", "../evil", "a/b", "a\\b", "x" * 65, "spa ce", None])
def test_bad_swarm_ids_are_refused(potluck_home, no_keyring, swarm_id):
    for call in (lambda: sec.store_secret(swarm_id, SECRET), lambda: sec.load_secret(swarm_id),
                 lambda: sec.delete_secret(swarm_id)):
        with pytest.raises(SecretStoreError, match="invalid secret name"):
            call()


@pytest.mark.parametrize("secret", [b"", b"short", "a string" * 4, b"x" * 1025])
def test_bad_secrets_are_refused(potluck_home, no_keyring, secret):
    with pytest.raises(SecretStoreError, match="16 to 1024 bytes"):
        sec.store_secret(SWARM, secret)


def test_damaged_file_and_missing_secret_give_clear_errors(potluck_home, no_keyring):
    with pytest.raises(SecretNotFound, match="no secret is stored"):
        sec.load_secret(SWARM)
    path = sec.store_secret(SWARM, SECRET).path
    path.write_text("not base64 !!!")
    with pytest.raises(SecretStoreError, match="damaged") as caught:
        sec.load_secret(SWARM)
    assert base64.urlsafe_b64encode(SECRET).decode() not in str(caught.value)


def test_delete_of_nothing_reports_nothing(potluck_home, file_keyring):
    assert sec.delete_secret(SWARM) == []


@pytest.mark.parametrize("func, sub", [(paths.config_dir, "config"), (paths.data_dir, "data"),
                                       (paths.cache_dir, "cache"), (paths.logs_dir, "logs")])
def test_potluck_home_overrides_every_folder(tmp_path, monkeypatch, func, sub):
    monkeypatch.setenv("POTLUCK_HOME", str(tmp_path))
    assert func() == tmp_path / sub
    assert not (tmp_path / sub).exists()  # computing a path creates nothing


@pytest.mark.parametrize("func", [paths.config_dir, paths.data_dir, paths.cache_dir, paths.logs_dir])
def test_platform_folders_are_named_for_potluck(monkeypatch, func):
    monkeypatch.delenv("POTLUCK_HOME", raising=False)
    assert "Potluck" in func().parts or "potluck" in str(func()).lower()
    monkeypatch.setenv("POTLUCK_HOME", "   ")  # blank means unset
    assert "potluck" in str(func()).lower() and Path("   ") not in func().parents


@posix_only
def test_ensure_dir_is_private(tmp_path):
    made = paths.ensure_dir(tmp_path / "a" / "b")
    assert made.is_dir() and stat.S_IMODE(made.stat().st_mode) == 0o700
    assert paths.ensure_dir(made) == made
