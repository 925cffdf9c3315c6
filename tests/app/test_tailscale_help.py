"""Tailscale guidance: the state of this PC's Tailscale from recorded `tailscale ip -4` / `tailscale status --json`
outputs (tests/swarm/data and tests/app/data/tailscale), what to do about it with Tailscale's own links, whether a
pasted code's addresses can work from here (node sharing's one-way trap), and the panel the wizard shows."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from potluck.app.tailscale_help import LOOPBACK_CODE, TailscalePanel, advice_html, code_reach_problem, headline
from potluck.core.swarm import tailscale as ts
from potluck.core.swarm.tailscale import CommandResult, TailscaleReport, TailscaleState

SWARM_DATA = Path(__file__).resolve().parents[1] / "swarm" / "data"
APP_DATA = Path(__file__).resolve().parent / "data" / "tailscale"
PEER = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"


def recorded(name: str) -> str:
    return (SWARM_DATA / name if (SWARM_DATA / name).exists() else APP_DATA / name).read_text()


def ok(name_or_text: str) -> CommandResult:
    return CommandResult(0, recorded(name_or_text) if name_or_text.endswith((".json", ".txt")) else name_or_text)


def err(name: str) -> CommandResult:
    return CommandResult(1, "", recorded(name))


@pytest.mark.parametrize(("ip4", "status", "state", "ipv4", "shared_in", "sharee"), [
    (ok("ip4_running.txt"), ok("status_running.json"), TailscaleState.RUNNING, "100.101.1.1", (), ()),
    (ok("100.88.40.7\n"), ok("status_shared.json"), TailscaleState.RUNNING, "100.88.40.7", ("ana-desktop",),
     ("dani-desktop",)),
    (err("err_needs_login.txt"), ok("status_stopped.json"), TailscaleState.STOPPED, "", (), ()),
    (err("err_needs_login.txt"), ok("status_needs_login.json"), TailscaleState.LOGGED_OUT, "", (), ()),
    (err("err_needs_login.txt"), ok("status_needs_machine_auth.json"), TailscaleState.NEEDS_APPROVAL, "", (), ()),
    (ok("100.101.1.2\n"), ok("status_starting.json"), TailscaleState.STARTING, "", (), ()),
    (err("err_daemon_down.txt"), ok("status_nostate.json"), TailscaleState.NOT_RUNNING, "", (), ()),
    (err("err_daemon_down.txt"), err("err_daemon_down.txt"), TailscaleState.NOT_RUNNING, "", (), ()),
    (ok(""), ok("status_running_no_ipv4.json"), TailscaleState.NO_ADDRESS, "", (), ()),
    (ok("100.101.1.9\n"), CommandResult(2, "", "flag provided but not defined: -json"), TailscaleState.RUNNING,
     "100.101.1.9", (), ()),  # an old CLI without --json
    (err("err_needs_login.txt"), CommandResult(1, "", "no current Tailscale IPs; state: NeedsLogin"),
     TailscaleState.LOGGED_OUT, "", (), ()),
    (None, None, TailscaleState.NOT_INSTALLED, "", (), ()),
])
def test_the_state_from_recorded_outputs(ip4, status, state, ipv4, shared_in, sharee):
    report = ts.classify_tailscale(ip4, status)
    assert (report.state, report.ipv4, report.shared_in, report.sharee) == (state, ipv4, shared_in, sharee)
    assert report.ready == (state is TailscaleState.RUNNING)


def test_logged_out_gives_tailscales_own_sign_in_link():
    report = ts.classify_tailscale(err("err_needs_login.txt"), ok("status_needs_login.json"))
    assert report.login_url == "https://login.tailscale.com/a/3f9c2e71b0d4a"
    assert "Sign in at https://login.tailscale.com/a/3f9c2e71b0d4a" in ts.tailscale_advice(report)
    assert ts.LOGIN_URL in ts.tailscale_advice(TailscaleReport(TailscaleState.LOGGED_OUT))


@pytest.mark.parametrize(("state", "words"), [
    (TailscaleState.NOT_INSTALLED, ("https://tailscale.com/download", "https://tailscale.com/kb/1017/install")),
    (TailscaleState.NOT_RUNNING, ("background service is not running",)),
    (TailscaleState.STOPPED, ("tailscale up",)),
    (TailscaleState.NEEDS_APPROVAL, ("admin",)),
    (TailscaleState.NO_ADDRESS, ("IPv4",)),
    (TailscaleState.STARTING, ("still connecting",)),
])
def test_advice_says_what_is_missing_and_how_to_fix_it(state, words):
    advice = ts.tailscale_advice(TailscaleReport(state))
    assert all(w in advice for w in words), advice
    assert headline(TailscaleReport(state)).startswith("Friends cannot reach this PC yet")


def test_ready_says_where_friends_reach_this_pc_and_warns_about_shared_in_machines():
    report = ts.classify_tailscale(ok("100.88.40.7\n"), ok("status_shared.json"))
    assert headline(report) == "Tailscale is ready: friends in your tailnet reach this PC at 100.88.40.7 (carla-mini)."
    assert "ana-desktop came into your tailnet by node sharing" in ts.tailscale_advice(report)
    assert ts.tailscale_advice(ts.classify_tailscale(ok("ip4_running.txt"), ok("status_running.json"))) == ""


def test_tailscale_state_runs_both_commands_and_says_not_installed_without_the_program():
    calls = []

    def runner(argv, timeout):
        calls.append(tuple(argv))
        if argv[0] != "tailscale":
            raise FileNotFoundError(argv[0])
        return ok("ip4_running.txt") if argv[1] == "ip" else ok("status_running.json")

    assert ts.tailscale_state(runner, programs=["/missing/tailscale", "tailscale"]).ready
    assert calls[-2:] == [("tailscale", "ip", "-4"), ("tailscale", "status", "--json")]
    assert ts.tailscale_state(runner, programs=["/missing/tailscale"]).state is TailscaleState.NOT_INSTALLED

    def hangs(argv, timeout):
        raise subprocess.TimeoutExpired(argv, timeout)

    assert ts.tailscale_state(hangs, programs=["tailscale"]).state is TailscaleState.NOT_RUNNING


RUNNING = ts.classify_tailscale(ok("ip4_running.txt"), ok("status_running.json"))
SHARED = ts.classify_tailscale(ok("100.88.40.7\n"), ok("status_shared.json"))


@pytest.mark.parametrize(("host", "report", "words"), [
    ("127.0.0.1", None, LOOPBACK_CODE),
    ("100.101.1.2", RUNNING, ""),  # bruno-gaming-pc, same tailnet
    ("100.101.1.2", None, ""),  # Tailscale not asked yet: nothing known to be wrong
    ("100.101.1.1", SHARED, "came into your tailnet by node sharing"),  # ana-desktop, shared in from another tailnet
    ("100.72.9.30", SHARED, "is not shared with you"),  # dani-desktop: this PC is shared to its owner only
    ("100.99.99.99", RUNNING, "does not know the address 100.99.99.99"),
    ("100.101.1.2", TailscaleReport(TailscaleState.LOGGED_OUT), "Tailscale is logged out"),
    ("192.168.1.20", RUNNING, ""),  # a LAN address: Tailscale has no say
])
def test_whether_a_codes_addresses_can_work_from_here(host, report, words):
    problem = code_reach_problem((f"/ip4/{host}/tcp/31337/p2p/{PEER}",), report)
    assert (problem == "") if words == "" else (words in problem), problem


def test_advice_links_are_clickable():
    html = advice_html("Install it from https://tailscale.com/download (step by step: https://tailscale.com/kb/1017/install).")
    assert "<a href='https://tailscale.com/download'>" in html and "<a href='https://tailscale.com/kb/1017/install'>" in html


def test_the_panel_checks_off_the_gui_thread_and_shows_what_to_do(qtbot):
    panel = TailscalePanel(lambda: TailscaleReport(TailscaleState.NOT_INSTALLED))
    qtbot.addWidget(panel)
    panel.check()
    qtbot.waitUntil(lambda: panel.report is not None, timeout=5000)
    assert panel.headline.text().startswith("Friends cannot reach this PC yet") and panel.headline.objectName() == "error"
    assert "https://tailscale.com/download" in panel.advice.text() and panel.check_button.isEnabled()
    panel.show_report(RUNNING)
    assert panel.headline.objectName() == "ok" and panel.advice.isHidden()
