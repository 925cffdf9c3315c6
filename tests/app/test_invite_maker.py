"""The tray's "Invite a friend" runs `potluck invite create [--swarm NAME]` and takes the code from its output."""

import sys

import pytest

from potluck.app.app_controller import cli_invite_maker

FAKE_CLI = """
import sys
args = sys.argv[1:]
if args[:2] != ["invite", "create"]:
    print("usage: potluck invite ACTION", file=sys.stderr); sys.exit(2)
if args[2:] == ["--swarm", "Friday"]:
    print("Invite code for Friday (one join, 7 days):"); print("  potluck-abc123"); sys.exit(0)
print("potluck invite create: no swarm named " + repr(args[3:]), file=sys.stderr); sys.exit(2)
"""


@pytest.fixture
def program(tmp_path):
    script = tmp_path / "fake_potluck.py"
    script.write_text(FAKE_CLI)
    return [sys.executable, str(script)]


def test_invite_code_is_taken_from_the_output(program):
    assert cli_invite_maker(program, lambda: {}, lambda: "Friday")() == "potluck-abc123"


def test_failure_carries_the_cli_message(program):
    with pytest.raises(RuntimeError, match="no swarm named"):
        cli_invite_maker(program, lambda: {}, lambda: "Other")()
