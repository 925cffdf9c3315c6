"""The node's side of the API (core/node/api_service.py, core/node/config.py): the settings "Let apps on this PC use
the swarm" and its port, the loopback endpoint they start and stop, and the private socket for this PC's terminal
programs (only this user may open it)."""

from __future__ import annotations

import os
import socket
import stat
import time

import httpx2
import pytest

from potluck.core.api.gateway import NodeClient, node_socket
from potluck.core.api.server import ApiConfigError, bind_unix
from potluck.core.node.api_service import ApiService
from potluck.core.node.config import NodeConfig, apply_values, restart_needed

SWARM_ID = "0123456789abcdef"


@pytest.mark.parametrize("values, expected", [
    ({"api_enabled": True}, (True, 8000)),
    ({"api_enabled": False, "api_port": 8123}, (False, 8123)),
    ({"api_port": 65535.0}, (False, 65535)),
])
def test_the_api_settings(values, expected):
    applied = apply_values(NodeConfig(), values)
    assert applied.problems == ()
    assert (applied.config.api_enabled, applied.config.api_port) == expected


@pytest.mark.parametrize("values, problem", [
    ({"api_enabled": "yes"}, "api_enabled must be true or false"),
    ({"api_enabled": 1}, "api_enabled must be true or false"),
    ({"api_port": 0}, "api_port must be in 1..65535"),
    ({"api_port": 70000}, "api_port must be in 1..65535"),
    ({"api_port": True}, "api_port must be in 1..65535"),
])
def test_bad_api_settings_are_reported(values, problem):
    assert apply_values(NodeConfig(), values).problems == (problem,)


def test_the_api_settings_apply_at_once():
    old = NodeConfig(model="m")
    assert restart_needed(old, NodeConfig(model="m", api_enabled=True, api_port=9000)) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def short_home(monkeypatch):
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pl-") as home:  # a socket path must fit in 104 bytes
        monkeypatch.setenv("POTLUCK_HOME", home)
        yield home


def test_the_loopback_endpoint_follows_the_settings(local_model, tiny_model, short_home):
    errors, tokens = [], []
    service = ApiService(lambda: local_model, lambda: tiny_model, on_token=lambda: tokens.append(1),
                         on_error=errors.append)
    port = free_port()
    try:
        assert service.url == ""
        service.update(enabled=True, port=port, swarm_id=None)
        assert service.url == f"http://127.0.0.1:{port}/v1"
        reply = httpx2.post(service.url + "/completions", json={"model": "tiny-llama", "prompt": "Hi", "max_tokens": 3,
                                                               "temperature": 0}, timeout=60)
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 3
        assert len(tokens) == 3  # the node counts what its apps used
        assert "potluck" not in reply.json()  # apps get no route details
        service.update(enabled=False, port=port, swarm_id=None)
        assert service.url == ""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            service.update(enabled=True, port=busy, swarm_id=None)
        assert service.url == "" and len(errors) == 1
        assert errors[0].startswith(f"Could not open the API for apps on port {busy}: cannot listen")
    finally:
        service.close()
    assert errors[1:] == []


def test_the_private_socket_for_this_pcs_terminal_programs(local_model, tiny_model, short_home):
    service = ApiService(lambda: local_model, lambda: tiny_model)
    try:
        service.update(enabled=False, port=8000, swarm_id=SWARM_ID)
        path = node_socket(SWARM_ID)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        client = NodeClient(path, "Friday night")
        result = client.generate(prompt="Hi", max_new_tokens=4)
        expected = local_model.generate(prompt="Hi", max_new_tokens=4)
        assert (result.token_ids, result.text, result.stop_reason) == \
            (expected.token_ids, expected.text, expected.stop_reason)
        assert [h.name for h in result.route] == ["this PC"]
        assert result.prompt_tokens == len(local_model.encode(prompt="Hi"))
        client.shutdown()
        service.update(enabled=False, port=8000, swarm_id=None)  # left the swarm: the socket goes
        deadline = time.monotonic() + 10
        while path.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        service.close()


def test_a_socket_path_too_long_is_refused_in_words(tmp_path):
    with pytest.raises(ApiConfigError, match="too long"):
        bind_unix(tmp_path / ("x" * 120) / "a.sock")
