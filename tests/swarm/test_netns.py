"""The private swarm across hosts with tailnet-like addresses: network namespaces on one bridge (TESTING.md).

    pl…-1  100.101.X.1  Ana: created the swarm, serves blocks 0-1           (`potluck serve --swarm`)
    pl…-2  100.101.X.2  Bruno: joined with Ana's code, serves blocks 2-3      (`potluck join - ...`)
    pl…-3  100.101.X.3  Dave (joined, then revoked) and outsiders with no code, a wrong code, an expired code
    host   100.101.X.254  Carla: joined with the same code; this test process generates as her

Every outsider tries to join the DHT, announce blocks, open a session and push activations against both
servers; the test counts every attempt and asserts that none succeeded. Skipped (with the reason) only where
`ip netns add` is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from potluck.core.swarm import dht as swarm_dht
from potluck.core.swarm.invite import Invite, encode_invite
from potluck.core.swarm.secure import open_swarm, store_lock
from potluck.core.swarm.services import member_services
from potluck.core.swarm.store import SwarmStore

from ..engine.test_exactness import reference
from .test_join import POTLUCK, ROOT, Node, env_for, potluck

pytestmark = [pytest.mark.slow, pytest.mark.netns]
PROMPT = [3, 14, 15, 92, 65, 35]
NEW_TOKENS = 6


@dataclass
class Tailnet:
    namespaces: list[str]
    ips: list[str]
    host_ip: str  # the bridge's address: this test process is a fourth host

    def prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[i]]


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)


@pytest.fixture(scope="module")
def tailnet():
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip`) is not installed")
    tag = f"{os.getpid() % 100000:05d}"
    subnet = f"100.101.{10 + os.getpid() % 200}"
    bridge, namespaces = f"plb{tag}", [f"pl{tag}-{i}" for i in (1, 2, 3)]
    first = _ip("netns", "add", namespaces[0])
    if first.returncode != 0:
        reason = f"network namespaces are refused here: `ip netns add` said {first.stderr.strip()!r}"
        print(reason)
        pytest.skip(reason)
    made = [namespaces[0]]
    try:
        for command in (["link", "add", bridge, "type", "bridge"], ["addr", "add", f"{subnet}.254/24", "dev", bridge],
                        ["link", "set", bridge, "up"]):
            _check(_ip(*command))
        for i, ns in enumerate(namespaces, start=1):
            if ns not in made:
                _check(_ip("netns", "add", ns))
                made.append(ns)
            veth = f"plv{tag}{i}"
            for command in (["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                            ["link", "set", veth, "master", bridge], ["link", "set", veth, "up"],
                            ["-n", ns, "addr", "add", f"{subnet}.{i}/24", "dev", "eth0"],
                            ["-n", ns, "link", "set", "eth0", "up"], ["-n", ns, "link", "set", "lo", "up"]):
                _check(_ip(*command))
        yield Tailnet(namespaces, [f"{subnet}.{i}" for i in (1, 2, 3)], f"{subnet}.254")
    finally:
        for ns in made:
            _ip("netns", "del", ns)
        _ip("link", "del", bridge)


def _check(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, f"{' '.join(done.args)}: {done.stderr}"


def attack_script(net: Tailnet, home, *args: str) -> dict:
    done = subprocess.run([*net.prefix(2), sys.executable, "-m", "tests.swarm.attacks", "--host", net.ips[2], *args],
                          capture_output=True, text=True, timeout=240, env=env_for(home), cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_members_generate_while_outsiders_get_nothing_across_hosts(tailnet, tiny_model, tmp_path, monkeypatch,
                                                                 no_keyring):
    from potluck.core.client.loop_thread import LoopThread
    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.model.loading import open_model

    net = tailnet
    model_dir = tiny_model
    spec = open_model(str(model_dir))
    ana, bruno, carla, dave = (tmp_path / n for n in ("ana", "bruno", "carla", "dave"))
    assert potluck(ana, "swarm", "create", "--name", "club", "--model", str(model_dir), "--member-name", "Ana").returncode == 0
    nodes, loop, client_dht, services = [], None, None, None
    try:
        nodes.append(Node(ana, "serve", "--swarm", "club", "--host", net.ips[0], "--blocks", "0:2",
                          "--membership-period", "1", prefix=net.prefix(0)).wait_ready())
        made = potluck(ana, "invite", "create", "--uses", "3")
        assert made.returncode == 0, made.stderr
        code = made.stdout.strip()
        assert f"/ip4/{net.ips[0]}/tcp/" in made.stderr  # the code names Ana's tailnet address
        nodes.append(Node(bruno, "join", "-", "--name", "Bruno", "--host", net.ips[1], "--blocks", "2:4",
                          "--membership-period", "1", stdin=code, prefix=net.prefix(1)))
        joins = [subprocess.Popen([*prefix, *POTLUCK, "join", "-", "--no-serve", "--name", name, "--host", host],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env_for(home), cwd=ROOT)
                 for home, name, host, prefix in ((carla, "Carla", net.host_ip, []),
                                                  (dave, "Dave", net.ips[2], net.prefix(2)))]
        for join in joins:
            out, err = join.communicate(code, timeout=120)
            assert join.returncode == 0, err
        nodes[1].wait_ready()

        # Carla (this process) generates through Ana's and Bruno's servers
        monkeypatch.setenv("POTLUCK_HOME", str(carla))
        node = open_swarm("club", refresh_seconds=0.5)
        loop = LoopThread()
        client_dht = swarm_dht.start_dht(node.dht_options(net.host_ip, client_mode=True))
        services = member_services(node, client_dht, accept_joins=False, sync_period_seconds=1.0, node_file=False,
                                   advertise=False)
        loop.run(services.__aenter__(), timeout=30)
        servers = {}
        deadline = time.monotonic() + 60
        while len(servers) < 2 and time.monotonic() < deadline:
            by_block = loop.run(swarm_dht.fetch_records(client_dht, spec.uid, range(spec.num_blocks)))
            servers = {r.peer_id: r for records in by_block.values() for r in records}
            time.sleep(0.5)
        assert len(servers) == 2, servers
        subnet = net.host_ip.rsplit(".", 1)[0]
        assert all(a.startswith(f"/ip4/{subnet}.") for r in servers.values() for a in r.addrs)  # tailnet only
        client = DistributedModelForCausalLM.from_pretrained(str(model_dir), dht=client_dht, timeout=15)
        try:
            tokens = client.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None).token_ids
        finally:
            client.shutdown()
        assert tokens == reference(str(model_dir), PROMPT, NEW_TOKENS)[0]

        targets = json.dumps([[r.peer_id, list(r.addrs), r.start_block, r.end_block] for r in servers.values()])
        common = ["--peers", *nodes[0].maddrs(), "--targets", targets, "--uid", spec.uid, "--num-blocks",
                  str(spec.num_blocks), "--hidden", str(spec.hidden_size), "--swarm-id", node.swarm_id]
        control = attack_script(net, dave, *common, "--mode", "member", "--session-only")["outsiders"]["member"]
        assert control["successes"]["session"] == 2  # before the revocation Dave is served, from his own host

        revoked = potluck(ana, "revoke", "Dave")
        assert revoked.returncode == 0, revoked.stderr
        store = SwarmStore(ana / "config" / "swarms.json")
        with store_lock(store):
            expired = store.create_invite(node.swarm_id, tuple(nodes[0].maddrs()), expires_in_seconds=3600,
                                          now=time.time() - 86400)
        invite = expired
        wrong = Invite(invite.swarm_name, invite.swarm_id, invite.model_id, invite.model_revision, invite.bootstrap,
                       os.urandom(16), invite.expires_at + 10**6, 1)
        marker = f"netns-marker-{os.urandom(4).hex()}"
        assert client_dht.store(marker, "fresh", swarm_dht.now() + 120)
        result = attack_script(net, dave, *common, "--marker", marker, "--code", encode_invite(wrong),
                               "--code", encode_invite(expired), "--mode", "plain", "--mode", "guess",
                               "--mode", "member", "--wait-refused", "60")
        assert [j["code"] for j in result["joins"]] == ["unknown", "expired"], result["joins"]
        assert result["refused_after_seconds"] is not None and result["refused_after_seconds"] < 60

        time.sleep(1.0)
        by_block = loop.run(swarm_dht.fetch_records(client_dht, spec.uid, range(spec.num_blocks)))
        seen = {r.peer_id for records in by_block.values() for r in records}
        outsiders = result["outsiders"]
        assert seen == set(servers) and not seen & {o["peer_id"] for o in outsiders.values()}
        attempts = sum(sum(o["attempts"].values()) for o in outsiders.values())
        successes = sum(sum(o["successes"].values()) for o in outsiders.values())
        assert attempts == 3 * (2 + 2 * 2) and successes == 0, outsiders
        assert sum(o["refusals"].get("not_a_member", 0) for o in outsiders.values()) == 3 * 2 * 2
        print(f"across namespaces: {attempts} attempts by 3 outsiders + 2 joins with bad codes, 0 succeeded; "
              f"the revocation took {result['refused_after_seconds']} s to reach both servers")
    finally:
        if services is not None:
            loop.run(services.__aexit__(None, None, None), timeout=20)
        if client_dht is not None:
            client_dht.shutdown()
        if loop is not None:
            loop.stop()
        for node_process in reversed(nodes):
            node_process.stop()
