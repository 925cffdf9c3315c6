"""Tailnet address discovery and node-sharing advice, on recorded `tailscale` and `ip` outputs."""

from __future__ import annotations

import ipaddress
import subprocess

import pytest

from potluck.core.swarm import tailscale as ts
from potluck.core.swarm.tailscale import BackendState, CommandResult, Problem, Sharing, TailnetError

from .conftest import data_text

IP = ipaddress.IPv4Address


@pytest.mark.parametrize("name, state, ipv4, hostname, suffix, peers", [
    ("status_running.json", BackendState.RUNNING, IP("100.101.1.1"), "ana-desktop", "tail7c3e1.ts.net", 2),
    ("status_stopped.json", BackendState.STOPPED, IP("100.101.1.1"), "ana-desktop", "tail7c3e1.ts.net", 0),
    ("status_needs_login.json", BackendState.NEEDS_LOGIN, None, "ana-desktop", "", 0),
    ("status_shared.json", BackendState.RUNNING, IP("100.88.40.7"), "carla-mini", "tail2f9a0.ts.net", 2),
])
def test_parse_status_json(name, state, ipv4, hostname, suffix, peers):
    status = ts.parse_status_json(data_text(name))
    assert (status.backend_state, status.self_ipv4, status.self_hostname) == (state, ipv4, hostname)
    assert (status.magic_dns_suffix, len(status.peers)) == (suffix, peers)


@pytest.mark.parametrize("text, state", [
    ('{"BackendState": "Starting", "Self": null, "Peer": null}', BackendState.STARTING),
    ('{"BackendState": "NeedsMachineAuth"}', BackendState.NEEDS_MACHINE_AUTH),
    ('{"BackendState": "SomethingNew", "Extra": 1}', BackendState.UNKNOWN),
])
def test_parse_status_json_minimal_and_future_states(text, state):
    assert ts.parse_status_json(text).backend_state is state


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"Self": {}}', '"Running"'])
def test_parse_status_json_rejects_other_output(text):
    with pytest.raises(ValueError):
        ts.parse_status_json(text)


def test_parse_status_json_reads_peers():
    status = ts.parse_status_json(data_text("status_running.json"))
    bruno = status.peer_by_ip("100.101.1.2")
    assert bruno is not None and bruno.hostname == "bruno-gaming-pc" and bruno.online and not bruno.sharee_node
    assert bruno.dns_name == "bruno-gaming-pc.tail7c3e1.ts.net"
    assert status.peer_by_ip("100.101.1.3").online is False
    assert status.peer_by_ip("100.99.99.99") is None


@pytest.mark.parametrize("text, expected", [
    ("100.101.1.1\n", [IP("100.101.1.1")]),
    ("100.101.1.1", [IP("100.101.1.1")]),
    ("\n  100.64.0.1  \n", [IP("100.64.0.1")]),
    ("192.168.1.20\n", []),  # not in 100.64.0.0/10
    ("100.128.0.1\n", []),  # just outside the range
    ("fd7a:115c:a1e0::3e01:101\n", []),
    ("", []),
    ("no current Tailscale IPs; state: NeedsLogin", []),
])
def test_parse_ip_output(text, expected):
    assert ts.parse_ip_output(text) == expected


@pytest.mark.parametrize("name, expected", [
    ("ip_addr_linux.txt", [("tailscale0", IP("100.101.1.1"))]),
    ("ip_addr_netns.txt", [("eth0", IP("100.101.1.2"))]),
    ("ip_addr_cgnat_isp.txt", []),
])
def test_parse_ip_addr_output(name, expected):
    assert ts.parse_ip_addr_output(data_text(name)) == expected


class FakeRunner:
    """Answers commands from a table; programs not in it do not exist. Records every call."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def __call__(self, argv, timeout):
        self.calls.append(tuple(argv))
        answer = self.table.get(tuple(argv), FileNotFoundError(argv[0]))
        if isinstance(answer, BaseException):
            raise answer
        return answer


def ok(text):
    return CommandResult(0, text)


def err(text):
    return CommandResult(1, "", text)


RUNNING = {("tailscale", "ip", "-4"): ok(data_text("ip4_running.txt")),
           ("tailscale", "status", "--json"): ok(data_text("status_running.json"))}
DAEMON_DOWN = {("tailscale", "ip", "-4"): err(data_text("err_daemon_down.txt")),
               ("tailscale", "status", "--json"): err(data_text("err_daemon_down.txt"))}
LINUX_IFACES = {("ip", "-4", "-o", "addr"): ok(data_text("ip_addr_linux.txt"))}
NETNS_IFACES = {("ip", "-4", "-o", "addr"): ok(data_text("ip_addr_netns.txt"))}
NO_TS_IFACES = {("ip", "-4", "-o", "addr"): ok(data_text("ip_addr_cgnat_isp.txt"))}
MAC_APP = "/Applications/Tailscale.app/Contents/MacOS/Tailscale"

FOUND = [
    ("running", RUNNING, None, "100.101.1.1", "tailscale ip -4", "ana-desktop"),
    ("ip -4 fails, status has it", {("tailscale", "ip", "-4"): err("exit status 1"),
                                    ("tailscale", "status", "--json"): ok(data_text("status_running.json"))},
     None, "100.101.1.1", "tailscale status --json", "ana-desktop"),
    ("old CLI without --json", {("tailscale", "ip", "-4"): ok("100.101.1.9\n"),
                                ("tailscale", "status", "--json"): err("flag provided but not defined: -json")},
     None, "100.101.1.9", "tailscale ip -4", ""),
    ("CLI missing, Linux interface", LINUX_IFACES, None, "100.101.1.1", "interface tailscale0", ""),
    ("CLI missing, network namespace", NETNS_IFACES, None, "100.101.1.2", "interface eth0", ""),
    ("CLI and ip missing, route probe", {}, IP("100.101.1.7"), "100.101.1.7", "route to 100.100.100.100", ""),
    ("macOS app bundle CLI", {(MAC_APP, "ip", "-4"): ok("100.101.1.4\n"),
                              (MAC_APP, "status", "--json"): ok(data_text("status_running.json"))},
     None, "100.101.1.4", "tailscale ip -4", "ana-desktop"),
]


@pytest.mark.parametrize("table, probed, ip, source, hostname", [c[1:] for c in FOUND], ids=[c[0] for c in FOUND])
def test_find_tailnet_ipv4(table, probed, ip, source, hostname):
    runner = FakeRunner(table)
    found = ts.find_tailnet_ipv4(runner, programs=["tailscale", MAC_APP], probe=lambda: probed)
    assert (str(found.ipv4), found.source, found.hostname) == (ip, source, hostname)


FAILS = [
    ("stopped, though ip -4 still prints", {("tailscale", "ip", "-4"): ok("100.101.1.1\n"),
                                            ("tailscale", "status", "--json"): ok(data_text("status_stopped.json"))},
     Problem.STOPPED, "tailscale up"),
    ("logged out", {("tailscale", "ip", "-4"): err(data_text("err_needs_login.txt")),
                    ("tailscale", "status", "--json"): ok(data_text("status_needs_login.json"))},
     Problem.NEEDS_LOGIN, "sign in"),
    ("logged out, status unreadable", {("tailscale", "ip", "-4"): err(data_text("err_needs_login.txt")),
                                       ("tailscale", "status", "--json"): err("")},
     Problem.NEEDS_LOGIN, "tailscale login"),
    ("awaiting approval", {("tailscale", "ip", "-4"): err(""),
                           ("tailscale", "status", "--json"): ok('{"BackendState": "NeedsMachineAuth"}')},
     Problem.NEEDS_APPROVAL, "admin"),
    ("service not started", {("tailscale", "ip", "-4"): err(""),
                             ("tailscale", "status", "--json"): ok('{"BackendState": "NoState"}')},
     Problem.DAEMON_DOWN, "background service"),
    ("daemon down, even with a 100.x interface", {**DAEMON_DOWN, **LINUX_IFACES}, Problem.DAEMON_DOWN, "systemctl"),
    ("command hangs", {("tailscale", "ip", "-4"): subprocess.TimeoutExpired("tailscale", 5)},
     Problem.DAEMON_DOWN, "Start the Tailscale app"),
    ("running but no IPv4", {("tailscale", "ip", "-4"): ok("fd7a:115c:a1e0::3e01:101\n"),
                             ("tailscale", "status", "--json"): ok('{"BackendState": "Running", "Self": '
                                                                   '{"TailscaleIPs": ["fd7a:115c:a1e0::1"]}}')},
     Problem.NO_ADDRESS, "IPv4"),
    ("not installed, no tailnet interface", NO_TS_IFACES, Problem.NOT_INSTALLED, "tailscale.com/download"),
    ("not installed, nothing at all", {}, Problem.NOT_INSTALLED, "not installed"),
]


@pytest.mark.parametrize("table, problem, advice", [c[1:] for c in FAILS], ids=[c[0] for c in FAILS])
def test_find_tailnet_ipv4_explains_what_to_do(table, problem, advice):
    with pytest.raises(TailnetError, match=advice) as caught:
        ts.find_tailnet_ipv4(FakeRunner(table), programs=["tailscale"], probe=lambda: IP("10.0.0.14"))
    assert caught.value.problem is problem


def test_the_real_runner_reports_a_missing_program():
    with pytest.raises(FileNotFoundError):
        ts.run_command(["potluck-no-such-program-xyz"], 5)


@pytest.mark.parametrize("name, ip, sharing", [
    ("status_shared.json", "100.101.1.1", Sharing.SHARED_IN),  # ana-desktop comes from another tailnet
    ("status_shared.json", "100.72.9.30", Sharing.SHAREE),  # carla-mini is shared with dani's account
    ("status_shared.json", "100.99.0.1", Sharing.NOT_IN_NETMAP),
    ("status_running.json", "100.101.1.2", Sharing.SAME_TAILNET),
])
def test_sharing_of(name, ip, sharing):
    assert ts.sharing_of(ts.parse_status_json(data_text(name)), ip) is sharing


@pytest.mark.parametrize("out, back, sharing, verdict, phrases", [
    (True, True, None, "ok", []),
    (True, True, Sharing.SHARED_IN, "ok", []),
    (True, False, None, "one_way_out", ["cannot connect back", "node sharing", "same tailnet", "firewall"]),
    (True, False, Sharing.SHARED_IN, "one_way_out", ["shared into your tailnet", "cannot connect back"]),
    (False, True, None, "one_way_in", ["cannot connect to Ana", "node sharing", "share their PC"]),
    (False, True, Sharing.SHAREE, "one_way_in", ["this PC is shared with Ana's owner"]),
    (False, False, None, "unreachable", ["Could not reach Ana", "online", "ACLs"]),
])
def test_explain_reachability(out, back, sharing, verdict, phrases):
    result = ts.explain_reachability(out, back, peer="Ana", port=31337, sharing=sharing)
    assert (result.ok, result.verdict) == (verdict == "ok", verdict)
    assert bool(result.message) is (verdict != "ok")
    for phrase in phrases:
        assert phrase in result.message
    if verdict != "ok":
        assert "31337" in result.message


@pytest.mark.parametrize("problem", list(Problem))
def test_every_problem_has_advice(problem):
    message = str(TailnetError(problem, "detail"))
    assert "Tailscale" in message and message.endswith("(detail)")


@pytest.mark.parametrize("ip, expected", [("100.64.0.0", True), ("100.127.255.255", True), ("100.128.0.0", False),
                                          ("100.63.255.255", False), ("127.0.0.1", False), ("fd7a::1", False),
                                          ("nonsense", False)])
def test_is_tailnet_ipv4(ip, expected):
    assert ts.is_tailnet_ipv4(ip) is expected
