"""Issue 13 on the node's edges: malformed lines on stdin never kill the real node process (finding 6), logs are
private (finding 10), and a plain-mode node listens on 127.0.0.1 unless told otherwise (finding 12)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from potluck.core import protocol
from potluck.core.protocol import NodeState
from tests.node.node_driver import NodeUnderTest

BAD_LINES = [  # (raw line, the start of the error event it must get)
    ('{"v":1,"kind":"start","x":' + "[" * 100_000 + "]" * 100_000 + "}", "bad command: nested deeper"),
    ('{"v":1,"kind":"start","x":' + "[" * 3000 + "]" * 3000 + "}", "bad command: nested deeper"),
    ('{"v":1,"kind":"refresh","x":' + "7" * 5000 + "}", "bad command: an integer of 5000 digits"),
    ('{"v":1e999,"kind":"start"}', "bad command: unsupported protocol version"),
    ('{"v":1,"kind":"start","x":NaN}', "bad command: NaN"),
    ('\ufeff{"v":1,"kind":"start"}', "bad command: not JSON"),
    ("null", "bad command: a message must be a JSON object"),
]


def _exists(node, what) -> bool:
    return any(isinstance(e, protocol.Error) and what in e.message for e in node.events)


def test_malformed_lines_never_kill_the_node_and_each_gets_an_error(tmp_path):
    """Finding 6, end to end through a real `potluck node`: deep nesting (RecursionError before), a 5,000-digit
    integer (ValueError before), bytes that are not UTF-8, and a log folder with a NUL in its name (ValueError in
    the log file's set-up before): each is answered, and the node still works and shuts down cleanly."""
    node = NodeUnderTest(tmp_path)
    try:
        node.state(NodeState.STOPPED, timeout=30)
        for line, words in BAD_LINES:
            node.send_raw(line)
            error = node.expect(f"an error for {line[:40]}", lambda e: isinstance(e, protocol.Error), timeout=15)
            assert error.message.startswith(words), error.message
        node.process.stdin.write(b'{"v":1,"kind":"start","x":"\xff\xfe"}\n')  # not UTF-8
        node.process.stdin.flush()
        error = node.expect("an error for bytes", lambda e: isinstance(e, protocol.Error), timeout=15)
        assert error.message.startswith("bad command: not UTF-8 text")
        node.send(protocol.SetConfig(values={"log_dir": "/tmp/no\u0000such"}))
        node.send(protocol.Refresh())
        node.expect("stats after all that", lambda e: isinstance(e, protocol.Stats), timeout=15)
        assert node.process.poll() is None, "\n".join(node.stderr[-20:])
        node.send(protocol.Shutdown())
        assert node.wait_exit(30) == 0
        assert node.garbage == []
    finally:
        node.kill()


# ---- finding 10: private logs ------------------------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0)  # the worst case: everything world-readable unless made private on purpose
    yield
    os.umask(old)


def test_the_nodes_own_log_is_private_even_after_rotation(tmp_path, open_umask):
    from potluck.core.node.stdio import LogFile

    folder = tmp_path / "logs" / "nested"
    old = tmp_path / "old-logs"
    old.mkdir()
    (old / "node-process.log").write_text("from an older Potluck\n")
    os.chmod(old / "node-process.log", 0o644)
    log_file = LogFile()
    try:
        log_file.use_folder(folder)
        handler = log_file._handler
        handler.maxBytes = 200
        for i in range(20):
            logging.getLogger("potluck.test").warning("peer 12D3KooW%03d at /ip4/100.101.1.1/tcp/4001", i)
        assert _mode(folder) == 0o700 and _mode(folder / "node-process.log") == 0o600
        assert (folder / "node-process.log.1").exists() and _mode(folder / "node-process.log.1") == 0o600
        log_file.use_folder(old)
        assert _mode(old / "node-process.log") == 0o600  # narrowed
        log_file.use_folder(Path("/tmp/bad\u0000name"))  # refused with a warning, never an exception
        assert log_file.path is None
    finally:
        log_file.close()


def test_the_apps_node_log_is_private(tmp_path, open_umask):
    from potluck.app.log_file import NodeLogFile

    folder = tmp_path / "app-logs"
    log = NodeLogFile(folder, max_bytes=100)
    for i in range(10):
        log.write(f"node: peer {i} joined from 100.101.1.{i}")
    log.write("x")  # a fresh file after the last rotation
    log.close()
    assert _mode(folder) == 0o700 and _mode(folder / "node.log") == 0o600 and _mode(folder / "node.log.1") == 0o600
    (folder / "node.log").chmod(0o644)
    again = NodeLogFile(folder)
    again.write("again")
    again.close()
    assert _mode(folder / "node.log") == 0o600 and not again.failed
    broken = NodeLogFile(Path("/tmp/bad\u0000name"))
    broken.write("x")
    assert broken.failed


# ---- finding 12: a plain node listens on this PC only --------------------------------------------------------------------
@pytest.mark.parametrize("host, environ, expected", [
    ("", {}, "127.0.0.1"),  # a tailnet exists, but an open swarm is never put on it unasked
    ("100.101.1.7", {}, "100.101.1.7"),  # the settings name an address
    ("", {"POTLUCK_HOST": "100.101.1.8"}, "100.101.1.8"),
])
def test_a_plain_node_listens_on_loopback_unless_told(monkeypatch, host, environ, expected):
    from potluck.core.node.config import NodeConfig
    from potluck.core.node.network import NodeNetwork
    from potluck.core.swarm import tailscale

    monkeypatch.setattr(tailscale, "find_tailnet_ipv4", lambda *a, **k: _Tailnet("100.101.1.9"))
    network = NodeNetwork(NodeConfig(mode="plain", host=host), environ=environ)
    assert network._listen_host() == expected


class _Tailnet:
    def __init__(self, ip):
        import ipaddress

        self.ipv4 = ipaddress.IPv4Address(ip)


@pytest.mark.slow
def test_a_plain_nodes_dht_listens_on_loopback_with_a_tailnet_present(monkeypatch):
    """The node's real DHT in plain mode while Tailscale reports an address: it listens on 127.0.0.1 only (an
    open swarm admits everyone who reaches it)."""
    from potluck.core.node.config import NodeConfig
    from potluck.core.node.network import NodeNetwork
    from potluck.core.swarm import tailscale

    monkeypatch.setattr(tailscale, "find_tailnet_ipv4", lambda *a, **k: _Tailnet("100.101.1.9"))
    network = NodeNetwork(NodeConfig(mode="plain"), environ={})
    try:
        network.ensure()
        maddrs = network.maddrs()
        assert maddrs and all(m.startswith("/ip4/127.0.0.1/") for m in maddrs), maddrs
    finally:
        import asyncio

        asyncio.run(network.close())
