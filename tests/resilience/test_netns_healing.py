"""Three hosts on a tailnet-like network (network namespaces, 100.102.0.x): one is cut off and comes back.

While host 2 is cut off, generation goes through host 3's replica with the same output; once the link is back,
host 2 rejoins the DHT by itself and is routed through again.
"""

import json
import subprocess
import sys
import time

import pytest

from potluck.core.localswarm import LocalSwarm, child_environment
from tests.engine.test_exactness import reference

pytestmark = [pytest.mark.slow, pytest.mark.netns]
HOSTS = {1: "100.102.0.1", 2: "100.102.0.2", 3: "100.102.0.3"}
PROMPT = "4,8,15,16,23,42"


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check)


@pytest.fixture
def tailnet():
    """A bridge and one namespace per host; skipped (with the reason) where namespaces are refused."""
    try:
        sh("ip", "link", "add", "plr-br0", "type", "bridge")
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        pytest.skip(f"network namespaces are not available here: {getattr(e, 'stderr', e)}")
    try:
        sh("ip", "link", "set", "plr-br0", "up")
        for i, address in HOSTS.items():
            sh("ip", "netns", "add", f"plr-n{i}")
            sh("ip", "link", "add", f"plr-v{i}", "type", "veth", "peer", "name", "eth0", "netns", f"plr-n{i}")
            sh("ip", "link", "set", f"plr-v{i}", "master", "plr-br0")
            sh("ip", "link", "set", f"plr-v{i}", "up")
            sh("ip", "-n", f"plr-n{i}", "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", f"plr-n{i}", "link", "set", "eth0", "up")
            sh("ip", "-n", f"plr-n{i}", "link", "set", "lo", "up")
        yield {i: ["ip", "netns", "exec", f"plr-n{i}"] for i in HOSTS}
    finally:
        for i in HOSTS:
            sh("ip", "netns", "del", f"plr-n{i}", check=False)
            sh("ip", "link", "del", f"plr-v{i}", check=False)
        sh("ip", "link", "del", "plr-br0", check=False)


def potluck_in(ns, *args, timeout=120):
    return subprocess.run([*ns, sys.executable, "-m", "potluck.app.entry", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_environment())


def hosts_of(ns, peers, model):
    done = potluck_in(ns, "status", "--initial-peers", *peers, "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    models = json.loads(done.stdout)["models"]
    return {s["peer_id"]: s["state"] for m in models for g in m["blocks"] for s in g["servers"]}


def test_cut_off_host_heals_and_generation_never_changes(resilience_model, tailnet):
    ref_tokens, _ = reference(resilience_model, [4, 8, 15, 16, 23, 42], 8)
    swarm = LocalSwarm(str(resilience_model), [], extra_args=["--announce-period", "2"])
    try:
        swarm.add_server(0, 3, host=HOSTS[1], prefix=tailnet[1])
        cut = swarm.add_server(3, 6, host=HOSTS[2], prefix=tailnet[2])
        spare = swarm.add_server(3, 6, host=HOSTS[3], prefix=tailnet[3])
        peers = swarm.initial_peers
        assert all(a.startswith(f"/ip4/{HOSTS[1]}/") for a in peers)

        def generate():
            done = potluck_in(tailnet[1], "generate", "--model", str(resilience_model), "--initial-peers", *peers,
                              "--prompt-ids", PROMPT, "--max-new-tokens", "8", "--greedy", "--no-eos", "--json", "--timeout", "5")
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout.strip().splitlines()[-1])

        assert generate()["token_ids"] == ref_tokens
        sh("ip", "link", "set", "plr-v2", "down")  # host 2 drops off the network, no reset sent
        time.sleep(9)  # longer than its records live (3 announce periods)
        assert cut.peer_id not in hosts_of(tailnet[1], peers, resilience_model)
        during = generate()
        assert during["token_ids"] == ref_tokens
        assert {h["peer_id"] for h in during["route"]} >= {spare.peer_id}

        sh("ip", "link", "set", "plr-v2", "up")
        deadline, back = time.monotonic() + 30, False
        while time.monotonic() < deadline and not back:
            time.sleep(1)
            back = hosts_of(tailnet[1], peers, resilience_model).get(cut.peer_id) == "online"
        assert back, "the cut-off host did not rejoin within 30 s of the link coming back"
        healed_after = 30 - (deadline - time.monotonic())
        print(f"host 2 was announced again {healed_after:.1f} s after its link came back")
        assert generate()["token_ids"] == ref_tokens
    finally:
        swarm.stop()
