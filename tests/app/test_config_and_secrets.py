"""Settings file (load/save/validate) and the secret store's keyring fallback."""

from __future__ import annotations

import json
import stat

import pytest

from potluck.app.config_store import AppConfig, ConfigError, ConfigKey, SwarmMode, load_config, save_config
from potluck.app.secrets_store import SecretKey, SecretStore
from potluck.core import paths


def test_first_run_has_no_config(tmp_path):
    assert load_config(tmp_path / "app.json") is None


def test_save_then_load_round_trips(tmp_path):
    path = tmp_path / "deep" / "app.json"
    config = AppConfig(mode=SwarmMode.CREATE, model="org/tiny", swarm_name="Friday", pc_name="den",
                       memory_cap_gib=6.5, start_on_login=True, log_dir="/var/tmp/logs")
    save_config(path, config)
    assert load_config(path) == config
    assert json.loads(path.read_text())[ConfigKey.MEMORY_CAP_GIB.value] == 6.5
    assert [p.name for p in path.parent.iterdir()] == ["app.json"]  # no temporary file left behind


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"mode": "conquer"}', "unknown mode"),
    ('{"mode": "create"}', "needs a model"),
    ('{"mode": "join", "memory_cap_gib": "lots"}', "memory_cap_gib must be a float"),
    ('{"mode": "join", "memory_cap_gib": -1}', "memory cap must be between"),
    ('{"mode": "join", "start_on_login": 1}', "start_on_login must be a bool"),
    ('{"mode": "join", "pc_name": 7}', "pc_name must be a str"),
])
def test_broken_settings_files_are_reported(tmp_path, text, message):
    path = tmp_path / "app.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_unknown_keys_in_the_file_are_ignored(tmp_path):
    path = tmp_path / "app.json"
    path.write_text('{"mode": "join", "model": "org/m", "theme": "dark"}')
    assert load_config(path) == AppConfig(mode=SwarmMode.JOIN, model="org/m")


def test_node_values_carry_units():
    values = AppConfig(mode=SwarmMode.JOIN, memory_cap_gib=2.0).node_values(default_log_dir=__import__("pathlib").Path("/l"))
    assert values["memory_cap_bytes"] == 2 * 2**30 and values["log_dir"] == "/l" and values["mode"] == "join"


def test_secrets_go_to_the_keyring_when_it_works(memory_keyring):
    store = SecretStore()
    assert store.set(SecretKey.INVITE_CODE, "potluck-abc-0123456789").kind == "keyring"
    assert list(memory_keyring.data.values()) != [] and "potluck-abc" not in str(paths.config_dir())
    assert not any(paths.config_dir().rglob("*.key"))
    assert store.where == "the system keyring"
    assert store.node_environment() == {"POTLUCK_INVITE_CODE": "potluck-abc-0123456789"}
    store.delete(SecretKey.INVITE_CODE)
    assert store.get(SecretKey.INVITE_CODE) is None and store.node_environment() == {}


def test_secrets_fall_back_to_a_private_file_and_say_so(no_keyring):
    store = SecretStore()
    location = store.set(SecretKey.INVITE_CODE, "potluck-xyz-0123456789")
    assert location.kind == "file" and "no working system keyring" in store.where
    assert stat.S_IMODE(location.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(location.path.parent.stat().st_mode) == 0o700
    assert SecretStore().get(SecretKey.INVITE_CODE) == "potluck-xyz-0123456789"
    store.delete(SecretKey.INVITE_CODE)
    assert store.get(SecretKey.INVITE_CODE) is None
