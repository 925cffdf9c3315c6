"""The chat window with the fake node: streaming, Stop, New chat, settings, errors that lose nothing."""

from __future__ import annotations

from PySide6.QtCore import Qt

from potluck.app.chat import NOT_RUNNING_TEXT, ChatWindow
from potluck.app.sampling_panel import SamplingPanel, SamplingSettings
from potluck.core import protocol
from tests.app.node_records import sent_commands

WAIT_MS = 15_000


def make_chat(qtbot, node, icons, ui_settings) -> ChatWindow:
    ids = iter(f"req-{i}" for i in range(100))
    chat = ChatWindow(node, ui_settings, icons, new_request_id=lambda: next(ids))
    qtbot.addWidget(chat)
    chat.show()
    return chat


def generates(record) -> list[protocol.Generate]:
    return [c for c in sent_commands(record) if isinstance(c, protocol.Generate)]


def test_a_reply_streams_in_with_speed_and_route(qtbot, serving_node, icons, ui_settings, tmp_path):
    record = tmp_path / "record.jsonl"
    node = serving_node({"FAKE_NODE_RECORD": str(record), "FAKE_NODE_REPLY": "Blocks are shared by friends."})
    chat = make_chat(qtbot, node, icons, ui_settings)
    seen: list[str] = []
    node.token_received.connect(lambda _t: seen.append(chat.bubbles()[-1].text))
    chat.input.setPlainText("How does this work?")
    with qtbot.waitSignal(node.done_received, timeout=WAIT_MS):
        chat.send_button.click()
        assert not chat.send_button.isEnabled() and chat.stop_button.isEnabled()
    user, reply = chat.bubbles()
    assert user.text == "How does this work?" and user.role == "user"
    assert seen == ["Blocks ", "Blocks are ", "Blocks are shared ", "Blocks are shared by ", "Blocks are shared by friends."]
    assert reply.caption_label.text() == ("12.5 tokens/s · 5 tokens · via Ana's desktop (0–11) → Sam's desktop (12–23) → "
                                          "Ben's mini PC (24–31)")
    assert chat.history == [protocol.ChatMessage("user", "How does this work?"),
                            protocol.ChatMessage("assistant", "Blocks are shared by friends.")]
    assert chat.input.toPlainText() == "" and chat.stop_button.isEnabled() is False
    with qtbot.waitSignal(node.done_received, timeout=WAIT_MS):
        chat.input.setPlainText("And then?")
        qtbot.keyClick(chat.input, Qt.Key.Key_Return)  # Enter sends
    second = generates(record)[-1]
    assert [m.role for m in second.messages] == ["user", "assistant", "user"]  # the conversation so far


def test_stop_cancels_the_reply(qtbot, serving_node, icons, ui_settings):
    node = serving_node({"FAKE_NODE_REPLY": " ".join(["word"] * 300), "FAKE_NODE_TOKEN_DELAY_S": "0.05"})
    chat = make_chat(qtbot, node, icons, ui_settings)
    chat.input.setPlainText("Talk a lot")
    chat.send()
    qtbot.waitUntil(lambda: chat.bubbles()[-1].text.startswith("word"), timeout=WAIT_MS)
    with qtbot.waitSignal(node.done_received, timeout=WAIT_MS) as done:
        chat.stop_button.click()
    assert done.args[0].stop_reason == "cancelled"
    assert "stopped by you" in chat.bubbles()[-1].caption_label.text()
    assert chat.pending is None and chat.send_button.isEnabled() is False  # empty box: nothing to send


def test_new_chat_forgets_the_conversation(qtbot, serving_node, icons, ui_settings):
    node = serving_node()
    chat = make_chat(qtbot, node, icons, ui_settings)
    chat.input.setPlainText("hi")
    with qtbot.waitSignal(node.done_received, timeout=WAIT_MS):
        chat.send()
    chat.new_chat_button.click()
    qtbot.waitUntil(lambda: chat.bubbles() == [], timeout=WAIT_MS)
    assert chat.history == [] and chat.empty_label.isVisible()


def test_an_error_reply_keeps_the_message(qtbot, serving_node, icons, ui_settings):
    node = serving_node({"FAKE_NODE_GENERATE_ERROR": "Block 28 has no server"})
    chat = make_chat(qtbot, node, icons, ui_settings)
    chat.input.setPlainText("Are you there?")
    with qtbot.waitSignal(node.error_received, timeout=WAIT_MS):
        chat.send()
    reply = chat.bubbles()[-1]
    assert reply.caption_label.text().startswith("No reply: Block 28 has no server.")
    assert chat.input.toPlainText() == "Are you there?"  # back in the box
    assert chat.history == [] and chat.pending is None and chat.send_button.isEnabled()


def test_sending_without_a_node_says_so_and_keeps_the_text(qtbot, make_node, icons, ui_settings):
    chat = make_chat(qtbot, make_node(), icons, ui_settings)
    chat.input.setPlainText("hello?")
    chat.send_button.click()
    assert chat.notice_label.text() == NOT_RUNNING_TEXT and chat.notice_label.isVisible()
    assert chat.input.toPlainText() == "hello?" and chat.bubbles() == []


def test_a_node_crash_mid_reply_fails_the_reply_and_keeps_the_message(qtbot, serving_node, icons, ui_settings):
    from potluck.app.node_command import RestartPolicy

    node = serving_node({"FAKE_NODE_REPLY": " ".join(["w"] * 500), "FAKE_NODE_TOKEN_DELAY_S": "0.05"},
                        restart_policy=RestartPolicy(max_restarts=0))
    chat = make_chat(qtbot, node, icons, ui_settings)
    chat.input.setPlainText("keep me")
    chat.send()
    qtbot.waitUntil(lambda: chat.bubbles()[-1].text.startswith("w"), timeout=WAIT_MS)
    node._process.kill()  # the node dies mid-reply
    qtbot.waitUntil(lambda: chat.pending is None, timeout=WAIT_MS)
    assert "The node stopped before the reply finished." in chat.bubbles()[-1].caption_label.text()
    assert chat.input.toPlainText() == "keep me"


def test_sampling_settings_are_sent_and_remembered(qtbot, serving_node, icons, ui_settings, tmp_path):
    record = tmp_path / "record.jsonl"
    node = serving_node({"FAKE_NODE_RECORD": str(record)})
    chat = make_chat(qtbot, node, icons, ui_settings)
    chat.sampling.set_values(SamplingSettings(max_new_tokens=64, temperature=0.0, top_p=0.5, top_k=0,
                                              repetition_penalty=1.2, seed=42))
    chat.input.setPlainText("deterministic please")
    with qtbot.waitSignal(node.done_received, timeout=WAIT_MS):
        chat.send()
    sent = generates(record)[-1]
    assert (sent.max_new_tokens, sent.temperature, sent.top_p, sent.top_k, sent.repetition_penalty, sent.seed) == \
        (64, 0.0, 0.5, 0, 1.2, 42)
    again = SamplingPanel(ui_settings)
    qtbot.addWidget(again)
    assert again.values() == SamplingSettings(64, 0.0, 0.5, 0, 1.2, 42)


def test_sampling_settings_survive_garbage_in_qsettings():
    assert SamplingSettings.from_json("nonsense") == SamplingSettings()
    assert SamplingSettings.from_json({"temperature": "hot", "seed": -1, "top_k": 7}) == SamplingSettings(top_k=7)
