"""The real node process (`python -m potluck.app.entry node`) driven over stdin/stdout as the app drives it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from potluck.core import protocol
from potluck.core.protocol import NodeState
from tests.node.node_driver import NodeUnderTest, node_environment

PC_NAME = "Sam's desktop"


def gui_values(model: str, home: Path, mode: str = "create", **extra) -> dict:
    """What the app sends right after hello (AppConfig.node_values), plus `extra`."""
    return {"mode": mode, "model": model, "swarm_name": "Friday night", "pc_name": PC_NAME,
            "memory_cap_bytes": 0, "log_dir": str(home / "logs"), **extra}


def test_hello_first_bad_lines_answered_and_the_node_follows_its_app(tmp_path):
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # stands in for the GUI
    node = NodeUnderTest(tmp_path, node_environment(tmp_path, POTLUCK_PARENT_PID=str(app.pid)))
    try:
        node.expect("hello", lambda e: True, timeout=30)
        assert isinstance(node.events[0], protocol.Hello) and node.events[0].pid == node.process.pid
        assert node.state(NodeState.STOPPED, timeout=5) is node.events[1]
        for line, words in [("this is not JSON", "bad command: not JSON"),
                            ('{"v":1,"kind":"stats"}', "bad command: expected a command, got the event 'stats'"),
                            ('{"v":2,"kind":"start"}', "bad command: unsupported protocol version 2"),
                            ('{"v":1,"kind":"generate","request_id":"r"}', "bad command: generate: give exactly one")]:
            node.send_raw(line)
            error = node.expect(f"an error for {line}", lambda e: isinstance(e, protocol.Error), timeout=10)
            assert error.message.startswith(words) and error.request_id is None
        node.send(protocol.SetConfig(values={"memory_cap_bytes": -1, "a_newer_setting": True}))
        error = node.expect("the set_config error", lambda e: isinstance(e, protocol.Error), timeout=10)
        assert error.message == "set_config: memory_cap_bytes must be >= 0"
        node.send(protocol.Refresh())
        node.expect("stats after all that", lambda e: isinstance(e, protocol.Stats), timeout=10)
        maps = Path(f"/proc/{node.process.pid}/maps")
        if maps.exists():  # an idle node has not loaded the engine at all: hello cannot have waited for it
            assert "libtorch" not in maps.read_text()
        app.kill()  # the app dies without closing our pipes (its pid disappears)
        assert node.wait_exit(15) == 0
        assert node.garbage == []
    finally:
        app.kill()
        node.kill()


def test_a_missing_model_folder_fails_in_words_and_the_node_stays(tmp_path):
    node = NodeUnderTest(tmp_path)
    try:
        node.state(NodeState.STOPPED, timeout=30)
        node.send(protocol.SetConfig(values=gui_values(str(tmp_path / "no-such-model"), tmp_path)))
        node.send(protocol.Start())
        failed = node.state(NodeState.FAILED, timeout=60)
        assert failed.detail == (f"There is no model at {tmp_path / 'no-such-model'}. Put it back there, or start "
                                 "the swarm again with the model's folder or .gguf file (Swarm page, Start a new "
                                 "swarm).")  # not "in Settings": Settings cannot change a swarm's model
        node.send(protocol.Start())  # Try again: the same words, and still alive
        node.state(NodeState.STARTING, timeout=10)
        assert node.state(NodeState.FAILED, timeout=30).detail == failed.detail
        node.send(protocol.Refresh())
        node.expect("stats", lambda e: isinstance(e, protocol.Stats), timeout=10)
        node.close_stdin()  # the app is gone
        node.state(NodeState.STOPPING, timeout=10)
        assert node.wait_exit(20) == 0
        assert node.garbage == []
    finally:
        node.kill()


# ---------------------------------------------------------------------------------------------- serving


@pytest.fixture(scope="module")
def serving(tiny_model, tmp_path_factory):
    home = tmp_path_factory.mktemp("node-home")
    node = NodeUnderTest(home)
    node.home = home
    try:
        node.state(NodeState.STOPPED, timeout=30)
        node.send(protocol.SetConfig(values=gui_values(tiny_model, home, mode="plain")))  # private: test_private_swarm
        node.send(protocol.Start())
        node.state(NodeState.SERVING, timeout=180)
        yield node
    finally:
        node.kill()


def reply(node: NodeUnderTest, request_id: str, timeout: float = 120.0) -> tuple[list[protocol.Token], protocol.Done]:
    done = node.expect(f"done for {request_id}", lambda e: isinstance(e, protocol.Done) and e.request_id == request_id,
                       timeout)
    tokens = [e for e in node.events if isinstance(e, protocol.Token) and e.request_id == request_id]
    return tokens, done


@pytest.mark.slow
def test_start_reports_loading_sizing_then_serving(serving, tiny_model):
    states = [(e.state, e.detail) for e in serving.events if isinstance(e, protocol.State)]
    assert states[:2] == [(NodeState.STOPPED, "Waiting for start"), (NodeState.STARTING, "Opening the model")]
    assert (NodeState.STARTING, "Loading blocks 0–3") in states
    assert states[-1] == (NodeState.SERVING, "Serving blocks 0–3 of 4")
    (sizing,) = [e for e in serving.events if isinstance(e, protocol.Sizing)]
    assert (sizing.num_blocks, sizing.start_block, sizing.end_block, sizing.total_blocks) == (4, 0, 4, 4)
    assert "of RAM available" in sizing.explanation
    assert sizing.explanation.endswith("the model has 4 blocks → hosting all of them.")
    assert sizing.numbers["per_block_bytes"] > 0 and sizing.numbers["free_memory_bytes"] > 0
    assert [type(e) for e in serving.events[:1]] == [protocol.Hello]
    assert (serving.home / "logs" / "node-process.log").read_text().count("state: serving") == 1


@pytest.mark.slow
def test_stats_list_this_pc_and_the_coverage(serving):
    serving.send(protocol.Refresh())
    stats = serving.expect("stats with our record",
                           lambda e: isinstance(e, protocol.Stats) and e.coverage == (1, 1, 1, 1), timeout=30)
    me = [m for m in stats.members if m.peer_id == stats.peer_id]
    assert stats.peer_id.startswith("12D3KooW") and len(me) == 1
    assert (me[0].name, me[0].state, me[0].online) == (PC_NAME, "online", True)
    assert (me[0].start_block, me[0].end_block) == (0, 4)
    assert (stats.start_block, stats.end_block, stats.total_blocks) == (0, 4, 4)
    assert stats.memory_used_bytes > 0 and stats.memory_free_bytes > 0 and stats.throughput_tokens_per_second > 0


@pytest.mark.slow
def test_a_greedy_reply_streams_and_equals_the_local_model(serving, greedy_reference):
    prompt = "Tell me a story about the sea"
    serving.send(protocol.Generate(request_id="greedy", prompt=prompt, temperature=0.0, max_new_tokens=12))
    tokens, done = reply(serving, "greedy")
    ids, text = greedy_reference(greedy_reference.tokenizer(prompt, add_special_tokens=False)["input_ids"], 12)
    assert [t.token_id for t in tokens] == ids and done.token_count == len(ids)
    assert done.text == text
    streamed = "".join(t.text for t in tokens)  # a character still incomplete at the end is never streamed
    assert done.text.startswith(streamed) and not done.text[len(streamed):].strip("\ufffd")
    assert done.stop_reason == ("eos" if len(ids) < 12 else "length")
    assert done.tokens_per_second > 0
    assert [(h.name, h.start_block, h.end_block) for h in done.route] == [(PC_NAME, 0, 4)]


@pytest.mark.slow
def test_chat_messages_use_the_models_chat_template(serving, greedy_reference):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello! How are you today?"}]
    serving.send(protocol.Generate(request_id="chat", messages=tuple(protocol.ChatMessage(**m) for m in messages),
                                   temperature=0.0, max_new_tokens=10))
    tokens, done = reply(serving, "chat")
    template_ids = greedy_reference.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                                  return_dict=False)
    ids, text = greedy_reference(list(template_ids), 10)
    assert [t.token_id for t in tokens] == ids and (done.text, done.token_count) == (text, len(ids))


@pytest.mark.slow
def test_cancel_stops_a_reply(serving, greedy_reference):
    prompt = "Hello! How are you today? I am fine, thank you."
    ids, _ = greedy_reference(greedy_reference.tokenizer(prompt, add_special_tokens=False)["input_ids"], 300)
    assert len(ids) == 300, "the reference reply ends early: pick another prompt"
    serving.send(protocol.Generate(request_id="long", prompt=prompt, temperature=0.0, max_new_tokens=300))
    serving.expect("the first token", lambda e: isinstance(e, protocol.Token) and e.request_id == "long", timeout=60)
    serving.send(protocol.Cancel(request_id="long"))
    tokens, done = reply(serving, "long")
    assert done.stop_reason == "cancelled" and 1 <= done.token_count < 300
    assert [t.token_id for t in tokens] == ids[: done.token_count]
    serving.send(protocol.Cancel(request_id="long"))  # too late: nothing happens, nothing breaks
    serving.send(protocol.Refresh())
    stats = serving.expect("stats counting our tokens", lambda e: isinstance(e, protocol.Stats) and e.tokens_used > 0,
                           timeout=10)
    assert stats.tokens_used >= done.token_count + 12 and stats.tokens_served > 0 and stats.sessions_served >= 3


@pytest.mark.slow
def test_pause_drains_unloads_and_resume_serves_again(serving):
    serving.send(protocol.Pause())
    serving.state(NodeState.DRAINING, timeout=30)
    assert serving.state(NodeState.PAUSED, timeout=60).detail == "Paused by you"
    alert = serving.expect("the gap alert", lambda e: isinstance(e, protocol.Alert), timeout=30)
    assert (alert.level, alert.text, alert.blocks) == (protocol.AlertLevel.CRITICAL, "Blocks 0–3 have no server left",
                                                       (0, 1, 2, 3))
    serving.send(protocol.Refresh())
    stats = serving.expect("stats without our server",
                           lambda e: isinstance(e, protocol.Stats) and e.coverage == (0,) * 4, timeout=30)
    assert (stats.start_block, stats.end_block) == (0, 0)
    assert [(m.state, m.online) for m in stats.members if m.peer_id == stats.peer_id] == [("paused", True)]
    assert all(not (m.online and m.state == "online") for m in stats.members)  # our record went offline

    serving.send(protocol.Generate(request_id="while-paused", prompt="Hello", temperature=0.0, max_new_tokens=4))
    error = serving.expect("an error: nobody serves", lambda e: isinstance(e, protocol.Error), timeout=120)
    assert error.request_id == "while-paused" and "block 0" in error.message

    serving.send(protocol.Resume())
    serving.state(NodeState.STARTING, timeout=10)
    serving.state(NodeState.SERVING, timeout=120)
    serving.send(protocol.Generate(request_id="after-resume", prompt="Hello", temperature=0.0, max_new_tokens=4))
    _tokens, done = reply(serving, "after-resume")
    assert done.stop_reason in ("eos", "length") and done.token_count >= 1

    serving.send(protocol.Drain())
    assert serving.state(NodeState.DRAINING, timeout=30).detail == "Taking no new conversations"
    serving.send(protocol.Resume())
    assert serving.state(NodeState.SERVING, timeout=30).detail == "Serving blocks 0–3 of 4"


@pytest.mark.slow
def test_shutdown_leaves_and_exits(serving):
    serving.send(protocol.Shutdown())
    serving.state(NodeState.STOPPING, timeout=10)
    assert serving.wait_exit(20) == 0
    assert serving.garbage == []  # stdout carried protocol lines only, from hello to the end
