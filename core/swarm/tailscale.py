"""This PC's tailnet address, found the way a real install can, and explanations when Tailscale is not ready.

`find_tailnet_ipv4()` asks, in order:
  1. `tailscale ip -4` (the address), cross-checked with
  2. `tailscale status --json` (BackendState Running/Starting/Stopped/NeedsLogin/NeedsMachineAuth/NoState and
     Self.TailscaleIPs), then
  3. any local interface address in 100.64.0.0/10 (`ip -4 -o addr` on Linux, then the address the OS would send
     from towards Tailscale's 100.100.100.100; no packet is sent).
Commands go through an injectable runner so that the parsers and the decision are tested on recorded outputs.

Node sharing: a machine shared *into* a tailnet answers connections from it but cannot open connections to it.
A join therefore checks both directions; `explain_reachability` turns the two results into advice.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from potluck.core.errors import PotluckError

TAILNET_V4 = ipaddress.IPv4Network("100.64.0.0/10")  # Tailscale's CGNAT range
QUAD100 = "100.100.100.100"  # Tailscale's in-tailnet service address
COMMAND_TIMEOUT_SECONDS = 5.0


class BackendState(str, enum.Enum):
    RUNNING = "Running"
    STARTING = "Starting"
    STOPPED = "Stopped"
    NEEDS_LOGIN = "NeedsLogin"
    NEEDS_MACHINE_AUTH = "NeedsMachineAuth"
    NO_STATE = "NoState"
    UNKNOWN = "Unknown"  # a state this version of Potluck does not know


class Problem(str, enum.Enum):
    NOT_INSTALLED = "not_installed"
    DAEMON_DOWN = "daemon_down"
    STOPPED = "stopped"
    NEEDS_LOGIN = "needs_login"
    NEEDS_APPROVAL = "needs_approval"
    NO_ADDRESS = "no_address"


_ADVICE = {
    Problem.NOT_INSTALLED: "Tailscale is not installed on this PC (or its command is not on PATH). Install it from "
    "https://tailscale.com/download, sign in, and make sure your friends' PCs are in the same tailnet.",
    Problem.DAEMON_DOWN: "Tailscale is installed but its background service is not running. Start the Tailscale "
    "app (on Linux: sudo systemctl start tailscaled), then try again.",
    Problem.STOPPED: "Tailscale is stopped (disconnected). Open Tailscale and connect, or run: tailscale up",
    Problem.NEEDS_LOGIN: "Tailscale is logged out. Open Tailscale and sign in, or run: tailscale login",
    Problem.NEEDS_APPROVAL: "This PC is waiting for the tailnet's admin to approve it in the Tailscale admin console.",
    Problem.NO_ADDRESS: "Tailscale reports no IPv4 address for this PC. Check that IPv4 is enabled for your tailnet "
    "and that Tailscale shows this PC as connected.",
}

_STATE_PROBLEM = {
    BackendState.STOPPED: Problem.STOPPED,
    BackendState.NEEDS_LOGIN: Problem.NEEDS_LOGIN,
    BackendState.NEEDS_MACHINE_AUTH: Problem.NEEDS_APPROVAL,
    BackendState.NO_STATE: Problem.DAEMON_DOWN,
}


class TailnetError(PotluckError, RuntimeError):
    """No usable tailnet address; str(error) says what to do."""

    def __init__(self, problem: Problem, detail: str = ""):
        self.problem = problem
        super().__init__(_ADVICE[problem] + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str = ""


Runner = Callable[[Sequence[str], float], CommandResult]  # raises FileNotFoundError when the program is missing


@dataclass(frozen=True)
class TailnetAddress:
    ipv4: ipaddress.IPv4Address
    source: str  # "tailscale ip -4", "tailscale status --json", "interface tailscale0", "route to 100.100.100.100"
    hostname: str = ""  # this PC's name in the tailnet, when Tailscale said
    magic_dns_suffix: str = ""  # e.g. "tail1234.ts.net", when Tailscale said


@dataclass(frozen=True)
class PeerStatus:
    hostname: str
    dns_name: str
    ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    online: bool
    sharee_node: bool  # this PC is shared with that node's owner: it may connect to us, we cannot connect to it
    os: str = ""


@dataclass(frozen=True)
class TailscaleStatus:
    backend_state: BackendState
    self_ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    self_hostname: str
    magic_dns_suffix: str
    peers: tuple[PeerStatus, ...]
    auth_url: str = ""

    @property
    def self_ipv4(self) -> ipaddress.IPv4Address | None:
        return next((ip for ip in self.self_ips if ip.version == 4 and ip in TAILNET_V4), None)

    def peer_by_ip(self, ip: str | ipaddress.IPv4Address) -> PeerStatus | None:
        ip = ipaddress.ip_address(ip)
        return next((p for p in self.peers if ip in p.ips), None)


def is_tailnet_ipv4(ip: str | ipaddress.IPv4Address) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.version == 4 and addr in TAILNET_V4


def parse_ip_output(text: str) -> list[ipaddress.IPv4Address]:
    """`tailscale ip -4` output -> the tailnet IPv4 addresses on it (normally exactly one)."""
    found = []
    for token in text.split():
        if is_tailnet_ipv4(token):
            found.append(ipaddress.IPv4Address(token))
    return found


def parse_status_json(text: str) -> TailscaleStatus:
    """`tailscale status --json` output -> TailscaleStatus. Raises ValueError on anything that is not that."""
    data = json.loads(text)
    if not isinstance(data, dict) or "BackendState" not in data:
        raise ValueError("not the output of `tailscale status --json`")
    try:
        state = BackendState(data["BackendState"])
    except ValueError:
        state = BackendState.UNKNOWN
    me = data.get("Self") or {}
    ips = _ips(me.get("TailscaleIPs") or data.get("TailscaleIPs"))
    suffix = (data.get("CurrentTailnet") or {}).get("MagicDNSSuffix") or data.get("MagicDNSSuffix") or ""
    peers = tuple(
        PeerStatus(
            hostname=str(p.get("HostName", "")),
            dns_name=str(p.get("DNSName", "")).rstrip("."),
            ips=_ips(p.get("TailscaleIPs")),
            online=bool(p.get("Online", False)),
            sharee_node=bool(p.get("ShareeNode", False)),
            os=str(p.get("OS", "")),
        )
        for p in (data.get("Peer") or {}).values()
        if isinstance(p, dict)
    )
    return TailscaleStatus(state, ips, str(me.get("HostName", "")), str(suffix), peers, str(data.get("AuthURL", "")))


def parse_ip_addr_output(text: str) -> list[tuple[str, ipaddress.IPv4Address]]:
    """`ip -4 -o addr` output -> (interface, address) for each address in 100.64.0.0/10."""
    found = []
    for line in text.splitlines():
        m = re.match(r"\s*\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)/\d+", line)
        if m and is_tailnet_ipv4(m.group(2)):
            found.append((m.group(1).split("@")[0], ipaddress.IPv4Address(m.group(2))))
    return found


def classify_cli_error(result: CommandResult) -> Problem | None:
    """What a failed `tailscale ...` command means, from its message."""
    msg = (result.stderr + result.stdout).lower()
    if "doesn't appear to be running" in msg or "failed to connect to local tailscale" in msg or \
            "is tailscale running" in msg or "connection refused" in msg:
        return Problem.DAEMON_DOWN
    if "needslogin" in msg or "logged out" in msg or "log in" in msg:
        return Problem.NEEDS_LOGIN
    if "stopped" in msg:
        return Problem.STOPPED
    return None


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """The real runner. FileNotFoundError if the program does not exist."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return CommandResult(done.returncode, done.stdout, done.stderr)


def tailscale_programs() -> list[str]:
    """Where the `tailscale` command may be: PATH first, then each OS's usual install location."""
    found = [shutil.which("tailscale") or "tailscale"]
    if sys.platform == "win32":
        found.append(r"C:\Program Files\Tailscale\tailscale.exe")
    elif sys.platform == "darwin":
        found.append("/Applications/Tailscale.app/Contents/MacOS/Tailscale")
    return found


def route_probe() -> ipaddress.IPv4Address | None:
    """The local address the OS would use towards 100.100.100.100 (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((QUAD100, 53))
            return ipaddress.IPv4Address(s.getsockname()[0])
    except (OSError, ValueError):
        return None


def find_tailnet_ipv4(
    runner: Runner = run_command,
    *,
    programs: Sequence[str] | None = None,
    probe: Callable[[], ipaddress.IPv4Address | None] = route_probe,
    timeout: float = COMMAND_TIMEOUT_SECONDS,
) -> TailnetAddress:
    """This PC's tailnet IPv4, or TailnetError saying what the user should do."""
    programs = tailscale_programs() if programs is None else list(programs)
    problem = None
    for program in programs:
        try:
            ip_result = runner([program, "ip", "-4"], timeout)
        except FileNotFoundError:
            continue
        except (OSError, subprocess.TimeoutExpired):
            problem = Problem.DAEMON_DOWN
            continue
        status = _status(runner, program, timeout)
        if status is not None and status.backend_state in _STATE_PROBLEM:
            raise TailnetError(_STATE_PROBLEM[status.backend_state], f"state {status.backend_state.value}")
        hostname = status.self_hostname if status else ""
        suffix = status.magic_dns_suffix if status else ""
        ips = parse_ip_output(ip_result.stdout) if ip_result.returncode == 0 else []
        if ips:
            return TailnetAddress(ips[0], "tailscale ip -4", hostname, suffix)
        if status is not None and status.self_ipv4 is not None:
            return TailnetAddress(status.self_ipv4, "tailscale status --json", hostname, suffix)
        problem = classify_cli_error(ip_result) or problem or Problem.NO_ADDRESS
        break
    fallback = _interface_address(runner, probe, timeout)
    if fallback is not None and problem in (None, Problem.NO_ADDRESS):
        return fallback
    raise TailnetError(problem or Problem.NOT_INSTALLED)


def _status(runner: Runner, program: str, timeout: float) -> TailscaleStatus | None:
    try:
        result = runner([program, "status", "--json"], timeout)
        return parse_status_json(result.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def _interface_address(runner: Runner, probe, timeout: float) -> TailnetAddress | None:
    try:
        result = runner(["ip", "-4", "-o", "addr"], timeout)
        found = parse_ip_addr_output(result.stdout) if result.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        found = []
    if found:
        return TailnetAddress(found[0][1], f"interface {found[0][0]}")
    ip = probe()
    if ip is not None and ip in TAILNET_V4:
        return TailnetAddress(ip, f"route to {QUAD100}")
    return None


class Sharing(str, enum.Enum):
    SAME_TAILNET = "same_tailnet"  # both directions allowed (unless ACLs say otherwise)
    SHARED_IN = "shared_in"  # the peer is a machine shared into this tailnet: it cannot start connections to us
    SHAREE = "sharee"  # this PC is shared with the peer's owner: this PC cannot start connections to it
    NOT_IN_NETMAP = "not_in_netmap"  # Tailscale does not know that address


def sharing_of(status: TailscaleStatus, ip: str | ipaddress.IPv4Address) -> Sharing:
    """How node sharing relates this PC to the peer at `ip`, from this PC's `tailscale status --json`.
    SHARED_IN is inferred from a MagicDNS name outside this tailnet's suffix."""
    peer = status.peer_by_ip(ip)
    if peer is None:
        return Sharing.NOT_IN_NETMAP
    if peer.sharee_node:
        return Sharing.SHAREE
    suffix = status.magic_dns_suffix.strip(".")
    if suffix and peer.dns_name and not peer.dns_name.endswith("." + suffix):
        return Sharing.SHARED_IN
    return Sharing.SAME_TAILNET


@dataclass(frozen=True)
class Reachability:
    ok: bool
    verdict: str  # "ok", "one_way_in", "one_way_out", "unreachable"
    message: str  # for the user; "" when ok


def explain_reachability(we_reach_them: bool, they_reach_us: bool, *, peer: str, port: int | None = None,
                         sharing: Sharing | None = None) -> Reachability:
    """Turn a two-way connection test with a bootstrap peer into advice.

    `we_reach_them`: this PC opened a connection to the peer. `they_reach_us`: the peer opened one back (it was
    asked to dial this PC's announced address). `sharing`: `sharing_of(status, peer_ip)`, when known.
    """
    port_text = f" on port {port}" if port else ""
    if we_reach_them and they_reach_us:
        return Reachability(True, "ok", "")
    if we_reach_them:
        shared = f" Tailscale lists {peer} as a machine shared into your tailnet." \
            if sharing is Sharing.SHARED_IN else ""
        return Reachability(False, "one_way_out", (
            f"This PC can reach {peer}, but {peer} cannot connect back to this PC{port_text}.{shared} A swarm "
            "needs both directions. This is what Tailscale node sharing does: a machine shared into a tailnet answers "
            "connections but can never start one towards the tailnet it was shared into. Fix it by putting both "
            "PCs in the same tailnet (invite the friend's account as a user of your tailnet) or by sharing this PC "
            "with the friend too, so that each side is shared with the other. If you already did, check that no "
            f"firewall on this PC blocks incoming connections{port_text} on the Tailscale interface."))
    if they_reach_us:
        shared = f" Tailscale says this PC is shared with {peer}'s owner." if sharing is Sharing.SHAREE else ""
        return Reachability(False, "one_way_in", (
            f"{peer} can connect to this PC, but this PC cannot connect to {peer}{port_text}.{shared} This is what "
            "Tailscale node sharing does: a PC shared into a friend's tailnet answers connections from it but can "
            "never start one. Ask the friend to share their PC with your account too, or put both PCs in the same "
            "tailnet. If that is already so, check that no firewall on that PC blocks the port."))
    return Reachability(False, "unreachable", (
        f"Could not reach {peer}{port_text}. Check that it is online in Tailscale, that Potluck is running there, "
        "and that your tailnet's access rules (ACLs) allow these two PCs to talk."))


def _ips(values) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    out = []
    for v in values or ():
        try:
            out.append(ipaddress.ip_address(v))
        except (ValueError, TypeError):
            pass
    return tuple(out)


# ---- the state of Tailscale on this PC, for the app's guidance ---------------------------------------------------
DOWNLOAD_URL = "https://tailscale.com/download"
INSTALL_GUIDE_URL = "https://tailscale.com/kb/1017/install"
LOGIN_URL = "https://login.tailscale.com/start"


class TailscaleState(str, enum.Enum):
    NOT_INSTALLED = "not_installed"
    NOT_RUNNING = "not_running"  # installed, but its background service is down
    STARTING = "starting"
    STOPPED = "stopped"  # disconnected by its owner
    LOGGED_OUT = "logged_out"
    NEEDS_APPROVAL = "needs_approval"  # waiting for the tailnet's admin
    NO_ADDRESS = "no_address"  # connected, yet no IPv4 address for this PC
    RUNNING = "running"


@dataclass(frozen=True)
class TailscaleReport:
    """What `tailscale_state` found. `shared_in`: peers shared into this tailnet from another one (they cannot
    open connections to this PC); `sharee`: peers whose owner this PC is shared with (this PC cannot reach them)."""
    state: TailscaleState
    ipv4: str = ""
    hostname: str = ""
    tailnet: str = ""  # the MagicDNS suffix, e.g. tail1234.ts.net
    login_url: str = ""  # Tailscale's own sign-in link for this PC, when it gave one
    shared_in: tuple[str, ...] = ()
    sharee: tuple[str, ...] = ()
    status: TailscaleStatus | None = None

    @property
    def ready(self) -> bool:
        return self.state is TailscaleState.RUNNING and bool(self.ipv4)

    def sharing_with(self, ip: str) -> Sharing | None:  # None when Tailscale gave no peer list
        return sharing_of(self.status, ip) if self.status is not None else None


_BACKEND_TO_STATE = {BackendState.STARTING: TailscaleState.STARTING, BackendState.STOPPED: TailscaleState.STOPPED,
                     BackendState.NEEDS_LOGIN: TailscaleState.LOGGED_OUT, BackendState.NEEDS_MACHINE_AUTH:
                     TailscaleState.NEEDS_APPROVAL, BackendState.NO_STATE: TailscaleState.NOT_RUNNING}
_PROBLEM_TO_STATE = {Problem.DAEMON_DOWN: TailscaleState.NOT_RUNNING, Problem.NEEDS_LOGIN: TailscaleState.LOGGED_OUT,
                     Problem.STOPPED: TailscaleState.STOPPED}


def classify_tailscale(ip_result: CommandResult | None, status_result: CommandResult | None) -> TailscaleReport:
    """The state from the outputs of `tailscale ip -4` and `tailscale status --json` (None: the program is not
    installed). Pure: table-tested on recorded outputs."""
    if ip_result is None and status_result is None:
        return TailscaleReport(TailscaleState.NOT_INSTALLED)
    try:
        status = parse_status_json(status_result.stdout) if status_result is not None else None
    except ValueError:
        status = None
    ips = parse_ip_output(ip_result.stdout) if ip_result is not None and ip_result.returncode == 0 else []
    ipv4 = str(ips[0]) if ips else str(status.self_ipv4) if status is not None and status.self_ipv4 else ""
    if status is None:
        problems = [classify_cli_error(r) for r in (ip_result, status_result) if r is not None and r.returncode]
        state = _PROBLEM_TO_STATE.get(next((p for p in problems if p), None),
                                      TailscaleState.RUNNING if ipv4 else TailscaleState.NO_ADDRESS)
        return TailscaleReport(state, ipv4 if state is TailscaleState.RUNNING else "")
    state = _BACKEND_TO_STATE.get(status.backend_state, TailscaleState.RUNNING if ipv4 else TailscaleState.NO_ADDRESS)
    peers = [p for p in status.peers if p.ips]
    return TailscaleReport(
        state, ipv4 if state is TailscaleState.RUNNING else "", status.self_hostname, status.magic_dns_suffix,
        status.auth_url, tuple(p.hostname for p in peers if sharing_of(status, p.ips[0]) is Sharing.SHARED_IN),
        tuple(p.hostname for p in peers if p.sharee_node), status)


def tailscale_state(runner: Runner = run_command, *, programs: Sequence[str] | None = None,
                    timeout: float = COMMAND_TIMEOUT_SECONDS) -> TailscaleReport:
    """Ask this PC's Tailscale how it is (a few seconds at most; run it off the GUI thread)."""
    for program in tailscale_programs() if programs is None else programs:
        results = []
        for args in (("ip", "-4"), ("status", "--json")):
            try:
                results.append(runner([program, *args], timeout))
            except FileNotFoundError:
                results.append(None)
            except (OSError, subprocess.TimeoutExpired) as e:
                results.append(CommandResult(1, "", f"is Tailscale running? ({type(e).__name__})"))
        if results != [None, None]:
            return classify_tailscale(*results)
    return TailscaleReport(TailscaleState.NOT_INSTALLED)


def tailscale_advice(report: TailscaleReport) -> str:
    """What is missing and how to fix it, in plain words ('' when Tailscale is ready)."""
    words = {TailscaleState.NOT_INSTALLED: f"Tailscale is not installed. Install it from {DOWNLOAD_URL} (step by step: "
             f"{INSTALL_GUIDE_URL}), sign in, and ask your friends to sign in to the same tailnet.",
             TailscaleState.STARTING: "Tailscale is still connecting. Wait a moment, then check again.",
             TailscaleState.LOGGED_OUT: f"Tailscale is logged out. Sign in at {report.login_url or LOGIN_URL}, or "
             "open the Tailscale app and log in.",
             TailscaleState.NOT_RUNNING: _ADVICE[Problem.DAEMON_DOWN], TailscaleState.STOPPED: _ADVICE[Problem.STOPPED],
             TailscaleState.NEEDS_APPROVAL: _ADVICE[Problem.NEEDS_APPROVAL],
             TailscaleState.NO_ADDRESS: _ADVICE[Problem.NO_ADDRESS]}
    text = words.get(report.state, "")
    if report.ready and report.shared_in:
        text = (f"Tailscale is ready, but {', '.join(report.shared_in[:3])} came into your tailnet by node sharing: "
                "a shared machine cannot connect to this PC, so it cannot join through it. Invite those friends to "
                "your tailnet as users instead.")
    return text
