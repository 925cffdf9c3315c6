"""A server killed with -9 leaves no DHT process or p2pd behind, so a restart with the same identity works."""

import os
import subprocess
import time

import pytest

from potluck.core.localswarm import LocalSwarm

pytestmark = pytest.mark.slow


def descendants(pid: int) -> list[int]:
    rows = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    pairs = [tuple(map(int, line.split())) for line in rows.strip().splitlines()]
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in pairs:
            if ppid == parent:
                found.append(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_kill_9_leaves_no_orphans_and_the_identity_is_free_again(resilience_model, tmp_path):
    identity = str(tmp_path / "server.key")
    first = LocalSwarm(str(resilience_model), [(0, 6)], extra_args=["--identity", identity]).start()
    server = first.servers[0]
    children = descendants(server.process.pid)
    assert len(children) >= 2  # the DHT process and its p2pd
    server.process.kill()
    server.process.wait(5)
    deadline = time.monotonic() + 10
    while any(alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if alive(c)], "orphaned DHT or p2pd processes"

    second = LocalSwarm(str(resilience_model), [(0, 6)], extra_args=["--identity", identity]).start()
    try:
        assert second.servers[0].peer_id == server.peer_id  # same identity, not "already taken"
    finally:
        second.stop()


def test_sigterm_to_the_whole_process_group_stops_cleanly(resilience_model):
    """systemd, `docker stop` and `pkill` signal every process of the server, its DHT child included: the server
    must still drain, announce and exit, not hang on a DHT that left first."""
    import signal

    swarm = LocalSwarm(str(resilience_model), [(0, 6)]).start()
    server = swarm.servers[0]
    children = descendants(server.process.pid)
    os.killpg(server.process.pid, signal.SIGTERM)  # LocalSwarm starts each server in its own session
    assert server.process.wait(30) == 0
    assert "stopped" in server.log_tail()
    deadline = time.monotonic() + 10
    while any(alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if alive(c)]
