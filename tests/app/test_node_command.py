"""How the node is launched (command, environment) and when it is restarted: pure functions, as tables."""

from __future__ import annotations

import pytest

from potluck.app.node_command import RestartPolicy, node_command, node_environment, program_command


@pytest.mark.parametrize(("environ", "frozen", "expected"), [
    ({}, False, ["/py", "-m", "potluck.core", "node"]),
    ({}, True, ["/py", "node"]),
    ({"POTLUCK_NODE_COMMAND": "wsl -d Ubuntu -- potluck"}, True, ["wsl", "-d", "Ubuntu", "--", "potluck", "node"]),
    ({"POTLUCK_NODE_COMMAND": "'/opt/my potluck/bin/python' fake.py"}, False, ["/opt/my potluck/bin/python", "fake.py", "node"]),
    ({"POTLUCK_NODE_COMMAND": "   "}, False, ["/py", "-m", "potluck.core", "node"]),
])
def test_node_command(environ, frozen, expected):
    assert node_command(environ, frozen=frozen, executable="/py") == expected


def test_program_command():
    assert program_command(True, "/app/potluck") == ["/app/potluck"]
    assert program_command(False, "/py") == ["/py", "-m", "potluck.core"]


def test_node_environment_adds_secrets_and_keeps_the_base():
    env = node_environment({"PATH": "/bin"}, {"POTLUCK_INVITE_CODE": "potluck-abc"})
    assert env["PATH"] == "/bin" and env["POTLUCK_INVITE_CODE"] == "potluck-abc"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_node_environment_refuses_secret_names_outside_the_prefix():
    with pytest.raises(ValueError, match="POTLUCK_"):
        node_environment({}, {"HF_TOKEN": "x"})


@pytest.mark.parametrize(("history", "now", "delay"), [
    ([], 0.0, 1.0),
    ([0.0], 1.0, 2.0),
    ([0.0, 1.0], 2.0, 4.0),
    ([0.0, 1.0, 2.0], 3.0, None),  # three restarts within ten minutes: give up
    ([0.0, 1.0, 2.0], 600.5, 4.0),  # the first one left the window
    ([0.0, 1.0, 2.0], 1000.0, 1.0),  # all left the window: a fresh budget
])
def test_restart_policy_budget_and_backoff(history, now, delay):
    policy = RestartPolicy(max_restarts=3, window_seconds=600, first_delay_seconds=1.0, max_delay_seconds=30)
    policy.restart_times = list(history)
    assert policy.next_delay_seconds(now) == delay


def test_restart_policy_delay_is_capped_and_records_prune_old_entries():
    policy = RestartPolicy(max_restarts=10, first_delay_seconds=1.0, max_delay_seconds=5.0)
    for t in range(6):
        policy.record_restart(float(t))
    assert policy.next_delay_seconds(6.0) == 5.0
    policy.record_restart(700.0)
    assert policy.restart_times == [700.0]
    assert policy.restarts_in_window(700.0) == 1
