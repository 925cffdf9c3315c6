"""NodeProcess against a real child process (fake_node.py): start, pause, drain, stop, crash, restart, give up."""

from __future__ import annotations

import os

import pytest

from potluck.app.node_command import NodeTimeouts, RestartPolicy
from potluck.app.node_process import NodeProcess
from potluck.core import protocol
from potluck.core.protocol import NodeState
from tests.app.node_records import launches, sent_commands

WAIT_MS = 15_000  # generous: these wait for real processes on a busy 2-core machine, never assert speed


class StateLog:
    def __init__(self, node: NodeProcess) -> None:
        self.states: list[NodeState] = []
        node.state_changed.connect(self.states.append)


def wait_state(qtbot, node: NodeProcess, state: NodeState, timeout_ms: int = WAIT_MS) -> None:
    qtbot.waitUntil(lambda: node.state is state, timeout=timeout_ms)


def commands(path) -> list[str]:
    return [command.KIND.value for command in sent_commands(path)]


def test_start_says_hello_sends_config_then_start_and_serves(qtbot, make_node, tmp_path):
    record = tmp_path / "record.jsonl"
    node = make_node({"FAKE_NODE_RECORD": str(record), "POTLUCK_INVITE_CODE": "secret-code"},
                     config_values=lambda: {"model": "org/tiny", "memory_cap_bytes": 0})
    log = StateLog(node)
    with qtbot.waitSignal(node.hello_received, timeout=WAIT_MS) as hello:
        node.start()
    wait_state(qtbot, node, NodeState.SERVING)
    assert hello.args[0].version == "0.0-fake"
    assert log.states[0] is NodeState.STARTING and log.states[-1] is NodeState.SERVING
    qtbot.waitUntil(lambda: node.last_stats is not None and node.last_sizing is not None, timeout=WAIT_MS)
    assert (node.last_stats.start_block, node.last_stats.end_block) == (12, 24)
    assert commands(record)[:2] == ["set_config", "start"]
    (launch,) = launches(record)
    assert launch["argv"] == ["node"]  # the secret is not on the command line...
    assert launch["potluck_env"]["POTLUCK_INVITE_CODE"] == "secret-code"  # ...it is in the environment


def test_pause_drains_first_then_resume_serves_again(qtbot, make_node):
    node = make_node()
    node.start()
    wait_state(qtbot, node, NodeState.SERVING)
    log = StateLog(node)
    node.pause()
    wait_state(qtbot, node, NodeState.PAUSED)
    assert log.states == [NodeState.DRAINING, NodeState.PAUSED]
    assert node.is_running  # paused keeps the process
    node.resume()
    wait_state(qtbot, node, NodeState.SERVING)
    assert log.states[-2:] == [NodeState.STARTING, NodeState.SERVING]


def test_drain_keeps_the_process_and_reports_draining(qtbot, make_node):
    node = make_node()
    node.start()
    wait_state(qtbot, node, NodeState.SERVING)
    node.drain()
    wait_state(qtbot, node, NodeState.DRAINING)
    assert node.is_running


def test_stop_sends_shutdown_and_ends_stopped(qtbot, make_node, tmp_path):
    record = tmp_path / "record.jsonl"
    node = make_node({"FAKE_NODE_RECORD": str(record)})
    node.start()
    wait_state(qtbot, node, NodeState.SERVING)
    log = StateLog(node)
    with qtbot.waitSignal(node.stopped, timeout=WAIT_MS):
        node.stop()
    assert log.states == [NodeState.STOPPING, NodeState.STOPPED]
    assert not node.is_running
    assert commands(record)[-1] == "shutdown"
    assert any("exited with code 0" in line for line in node.log_tail())


def test_stop_escalates_to_kill_when_the_node_ignores_shutdown_and_terminate(qtbot, make_node):
    node = make_node({"FAKE_NODE_IGNORE_SHUTDOWN": "1"},
                     timeouts=NodeTimeouts(hello_ms=15_000, shutdown_ms=200, terminate_ms=200, kill_ms=5_000))
    node.start()
    wait_state(qtbot, node, NodeState.SERVING)
    with qtbot.waitSignal(node.stopped, timeout=WAIT_MS):
        node.stop()
    tail = "\n".join(node.log_tail())
    assert "terminating it" in tail and "killing it" in tail
    assert node.state is NodeState.STOPPED and not node.is_running


def test_a_crash_is_restarted_and_the_node_serves_again(qtbot, make_node, tmp_path):
    record = tmp_path / "record.jsonl"
    node = make_node({"FAKE_NODE_RECORD": str(record), "FAKE_NODE_CRASH_AFTER_S": "0.3", "FAKE_NODE_CRASH_LAUNCHES": "1"})
    log = StateLog(node)
    node.start()
    qtbot.waitUntil(lambda: len(launches(record)) == 2 and node.state is NodeState.SERVING, timeout=WAIT_MS)
    assert log.states.count(NodeState.SERVING) == 2  # served, crashed, restarted, served again
    assert NodeState.FAILED not in log.states
    assert "crashing as told" in "\n".join(node.log_tail())


def test_repeated_crashes_give_up_after_the_restart_budget_with_the_log_tail(qtbot, make_node, tmp_path):
    record = tmp_path / "record.jsonl"
    node = make_node({"FAKE_NODE_RECORD": str(record), "FAKE_NODE_CRASH_AFTER_S": "0.2"},
                     restart_policy=RestartPolicy(max_restarts=3, first_delay_seconds=0.01))
    node.start()
    wait_state(qtbot, node, NodeState.FAILED, timeout_ms=4 * WAIT_MS)
    assert len(launches(record)) == 4  # the first launch and three restarts
    assert "restarted 3 times" in node.detail
    tail = node.log_tail()
    assert sum("crashing as told" in line for line in tail) == 4
    assert 0 < len(tail) <= 50


def test_exit_at_start_fails_after_restarts_and_start_again_resets_the_budget(qtbot, make_node, tmp_path):
    record = tmp_path / "record.jsonl"
    node = make_node({"FAKE_NODE_RECORD": str(record), "FAKE_NODE_EXIT_AT_START": "3"},
                     restart_policy=RestartPolicy(max_restarts=2, first_delay_seconds=0.01))
    node.start()
    wait_state(qtbot, node, NodeState.FAILED, timeout_ms=4 * WAIT_MS)
    assert len(launches(record)) == 3
    assert "exited with code 3" in node.detail
    assert "failing at start as told" in "\n".join(node.log_tail())
    node.start()  # the owner's "Try again"
    wait_state(qtbot, node, NodeState.FAILED, timeout_ms=4 * WAIT_MS)
    assert len(launches(record)) == 6


def test_a_node_that_never_says_hello_is_killed_and_counted_as_a_crash(qtbot, make_node):
    node = make_node({"FAKE_NODE_SILENT": "1"}, timeouts=NodeTimeouts(hello_ms=300),
                     restart_policy=RestartPolicy(max_restarts=0))
    node.start()
    wait_state(qtbot, node, NodeState.FAILED)
    assert "did not report in within 0.3 s" in node.detail
    assert not node.is_running


def test_a_missing_program_fails_with_a_clear_reason(qtbot, tmp_path):
    policy = RestartPolicy(max_restarts=1, first_delay_seconds=0.01)
    node = NodeProcess([str(tmp_path / "no-such-program")], restart_policy=policy)
    node.start()
    wait_state(qtbot, node, NodeState.FAILED)
    assert "could not start" in node.detail


def test_garbage_lines_are_reported_and_kept_and_the_node_still_serves(qtbot, make_node):
    node = make_node({"FAKE_NODE_GARBAGE": "1"})
    problems: list[str] = []
    node.problem.connect(problems.append)
    node.start()
    wait_state(qtbot, node, NodeState.SERVING)
    qtbot.waitUntil(lambda: len(problems) == 2, timeout=WAIT_MS)
    assert all("not a protocol message" in p for p in problems)
    tail = "\n".join(node.log_tail())
    assert "this is not JSON" in tail and "Some library printed this to stdout" in tail
    qtbot.waitUntil(lambda: node.last_stats is not None, timeout=WAIT_MS)


def test_a_failure_the_node_reports_is_shown_without_restarting(qtbot, make_node, tmp_path):
    record = tmp_path / "record.jsonl"
    node = make_node({"FAKE_NODE_RECORD": str(record), "FAKE_NODE_FAIL_START": "Not enough memory for one block"})
    node.start()
    wait_state(qtbot, node, NodeState.FAILED)
    assert node.detail == "Not enough memory for one block"
    assert node.is_running and len(launches(record)) == 1


def test_commands_while_not_running_are_refused_with_a_problem(qtbot, make_node):
    node = make_node()
    with qtbot.waitSignal(node.problem) as problem:
        assert node.send(protocol.Refresh()) is False
    assert "not running" in problem.args[0]


def test_generate_streams_tokens_then_done_with_the_route(qtbot, make_node):
    node = make_node({"FAKE_NODE_REPLY": "one two three"})
    node.start()
    wait_state(qtbot, node, NodeState.SERVING)
    tokens: list[protocol.Token] = []
    node.token_received.connect(tokens.append)
    with qtbot.waitSignal(node.done_received, timeout=WAIT_MS) as done:
        node.send(protocol.Generate(request_id="r1", prompt="hi"))
    assert "".join(t.text for t in tokens) == "one two three" == done.args[0].text
    assert [hop.name for hop in done.args[0].route] == ["Ana's desktop", "Sam's desktop", "Ben's mini PC"]


def test_cancel_stops_a_reply_early(qtbot, make_node):
    node = make_node({"FAKE_NODE_REPLY": " ".join(["word"] * 200), "FAKE_NODE_TOKEN_DELAY_S": "0.05"})
    node.start()
    wait_state(qtbot, node, NodeState.SERVING)
    node.send(protocol.Generate(request_id="r2", prompt="hi"))
    with qtbot.waitSignal(node.token_received, timeout=WAIT_MS):
        pass
    with qtbot.waitSignal(node.done_received, timeout=WAIT_MS) as done:
        node.send(protocol.Cancel(request_id="r2"))
    assert done.args[0].stop_reason == "cancelled" and done.args[0].token_count < 200


@pytest.mark.parametrize("bad", [[], ""])
def test_an_empty_command_is_refused(bad):
    with pytest.raises(ValueError):
        NodeProcess(list(bad))


def test_environment_reaches_the_child_only_through_the_callable(qtbot, make_node, tmp_path):
    record = tmp_path / "record.jsonl"
    os.environ.pop("POTLUCK_SHOULD_NOT_LEAK", None)
    node = make_node({"FAKE_NODE_RECORD": str(record), "POTLUCK_MEMORY_HINT": "x"})
    node.start()
    wait_state(qtbot, node, NodeState.SERVING)
    assert launches(record)[0]["potluck_env"] == {"POTLUCK_MEMORY_HINT": "x"}
