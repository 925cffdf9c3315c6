"""What the serving rules ask of the PC (core/node/machine.py): battery parsers from tables, and the real X11 idle
probe under Xvfb (moving the pointer with xdotool resets it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from potluck.core.node.machine import (
    IdleProbe,
    battery_from_supplies,
    on_battery,
    parse_ioreg_idle_seconds,
    parse_pmset_on_battery,
)

MAINS_ON = {"type": "Mains", "online": "1"}
MAINS_OFF = {"type": "Mains", "online": "0"}


@pytest.mark.parametrize("supplies, expected", [
    ([], None),  # a desktop without a battery
    ([MAINS_ON], None),
    ([MAINS_OFF, {"type": "Battery", "status": "Discharging"}], True),
    ([MAINS_ON, {"type": "Battery", "status": "Charging"}], False),
    ([MAINS_ON, {"type": "Battery", "status": "Discharging"}], False),  # mains wins over a stale status
    ([{"type": "Battery", "status": "Full"}], False),
    ([{"type": "USB", "online": "1"}, {"type": "Battery", "status": "Discharging"}], False),  # USB-C charging
    ([MAINS_OFF, {"type": "Battery", "status": "Discharging", "scope": "Device"}], None),  # a wireless mouse
])
def test_battery_from_supplies(supplies, expected):
    assert battery_from_supplies(supplies) is expected


def test_battery_from_a_sysfs_folder(tmp_path):
    for name, values in {"AC": {"type": "Mains", "online": "0"},
                         "BAT0": {"type": "Battery", "status": "Discharging"}}.items():
        (tmp_path / name).mkdir()
        for key, value in values.items():
            (tmp_path / name / key).write_text(value + "\n")
    assert on_battery("linux", tmp_path) is True
    assert on_battery("linux", tmp_path / "missing") is None


@pytest.mark.parametrize("text, expected", [
    ("Now drawing from 'Battery Power'\n -InternalBattery-0 (id=1)\t85%; discharging", True),
    ("Now drawing from 'AC Power'\n -InternalBattery-0 (id=1)\t100%; charged", False),
    ("Now drawing from 'AC Power'\n", None),  # a Mac mini
    ("", None),
])
def test_pmset(text, expected):
    assert parse_pmset_on_battery(text) is expected


def test_ioreg_idle():
    assert parse_ioreg_idle_seconds('  |   "HIDIdleTime" = 2500000000\n') == 2.5
    assert parse_ioreg_idle_seconds("nothing") is None


def test_no_display_means_the_idle_rule_cannot_apply():
    probe = IdleProbe(environ={}, platform="linux")
    assert probe.seconds() is None
    assert "no X display" in probe.why_not


def test_a_display_that_cannot_be_opened_says_why():
    probe = IdleProbe(environ={"DISPLAY": ":4242"}, platform="linux")
    assert probe.seconds() is None
    assert "4242" in probe.why_not


@pytest.fixture
def xvfb_display():
    if not shutil.which("Xvfb") or not shutil.which("xdotool"):
        pytest.skip("Xvfb and xdotool are needed (apt-get install xvfb xdotool)")
    display = ":57"
    server = subprocess.Popen(["Xvfb", display, "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(f"/tmp/.X11-unix/X{display[1:]}"):
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.skip("Xvfb did not start")
            time.sleep(0.05)
        yield display
    finally:
        server.terminate()
        server.wait(5)


def test_x11_idle_time_grows_and_input_resets_it(xvfb_display):
    probe = IdleProbe(environ={"DISPLAY": xvfb_display}, platform="linux")
    try:
        time.sleep(1.2)
        before = probe.seconds()
        assert before is not None and before >= 1.0, probe.why_not
        subprocess.run(["xdotool", "mousemove", "100", "120"], env={**os.environ, "DISPLAY": xvfb_display},
                       check=True, timeout=10)
        after = probe.seconds()
        assert after is not None and after < before
    finally:
        probe.close()
