"""Fixtures for the swarm tests: a private POTLUCK_HOME, keyring backends, recorded Tailscale outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

DATA = Path(__file__).parent / "data"


class FileKeyring(KeyringBackend):
    """A real keyring backend that keeps passwords in a JSON file (the test's stand-in for an OS keyring)."""

    priority = 1

    def __init__(self, path: Path | None = None):
        super().__init__()
        self.path = path

    def _load(self) -> dict:
        return json.loads(self.path.read_text()) if self.path and self.path.exists() else {}

    def get_password(self, service, username):
        return self._load().get(f"{service}\0{username}")

    def set_password(self, service, username, password):
        data = self._load()
        data[f"{service}\0{username}"] = password
        self.path.write_text(json.dumps(data))

    def delete_password(self, service, username):
        data = self._load()
        if data.pop(f"{service}\0{username}", None) is None:
            raise keyring.errors.PasswordDeleteError(username)
        self.path.write_text(json.dumps(data))


@pytest.fixture
def potluck_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "potluck-home"
    monkeypatch.setenv("POTLUCK_HOME", str(home))
    return home


@pytest.fixture
def use_keyring():
    """Install a keyring backend for one test, restoring the previous one after."""
    previous = keyring.get_keyring()
    yield keyring.set_keyring
    keyring.set_keyring(previous)


@pytest.fixture
def file_keyring(tmp_path, use_keyring) -> FileKeyring:
    backend = FileKeyring(tmp_path / "keyring.json")
    use_keyring(backend)
    return backend


@pytest.fixture
def no_keyring(use_keyring) -> None:
    use_keyring(fail.Keyring())


@dataclass(frozen=True)
class Identity:
    path: str  # libp2p identity file (RSA, as hivemind writes them)
    key: object  # hivemind RSAPrivateKey
    peer_id: str
    signer: object  # core.swarm.signing.Signer of the same key: signs member-list statements


@pytest.fixture(scope="session")
def ids(tmp_path_factory) -> dict[str, Identity]:
    """Four peer identities: ana, bruno, carla, mallory."""
    from hivemind.p2p import P2P

    from potluck.core.swarm import admission
    from potluck.core.swarm.signing import Signer

    folder = tmp_path_factory.mktemp("identities")
    out = {}
    for name in ("ana", "bruno", "carla", "mallory"):
        path = str(folder / name)
        P2P.generate_identity(path)
        key = admission.load_identity(path)
        out[name] = Identity(path, key, admission.peer_id_of(key.get_public_key()), Signer.from_identity(path))
    return out


def data_text(name: str) -> str:
    return (DATA / name).read_text()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small sharded random-weight llama (4 blocks, hidden 64) with a tokenizer, shared by the swarm tests."""
    from potluck.core.model.tiny import make_tiny_model

    return make_tiny_model("llama", tmp_path_factory.mktemp("tiny") / "llama", layers=4, hidden=64, seed=3,
                           shard_size="40KB")
