"""The chat as people know it from chat apps: Markdown replies with copyable code, copy and regenerate, conversations
kept across restarts and listed, and Stop, New chat or closing the window really cancelling the reply."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6.QtGui import QGuiApplication

from potluck.app.chat import ChatWindow
from potluck.app.conversation_list import when_text
from potluck.app.conversations import ConversationStore, StoredMessage, title_from
from potluck.app.markdown_view import Segment, split_markdown
from potluck.core import protocol
from tests.app.node_records import sent_commands

WAIT_MS = 15_000
CODE_REPLY = "Here is how:\n\n```python\nprint('hello')\nx = 2\n```\n\nThat prints **hello**."


def make_chat(qtbot, node, icons, ui_settings, store_path, confirm=lambda title, question: True,
              ask_title=lambda parent, current: None) -> ChatWindow:
    ids = iter(f"req-{i}" for i in range(100))
    chat = ChatWindow(node, ui_settings, icons, new_request_id=lambda: next(ids),
                      conversations=lambda: ConversationStore(store_path), confirm=confirm, ask_title=ask_title)
    qtbot.addWidget(chat)
    chat.show()
    return chat


def ask(qtbot, chat, node, text: str) -> None:
    chat.input.setPlainText(text)
    with qtbot.waitSignal(node.done_received, timeout=WAIT_MS):
        chat.send()


@pytest.mark.parametrize("text, segments", [
    ("plain **bold**", [Segment("text", "plain **bold**")]),
    (CODE_REPLY, [Segment("text", "Here is how:"), Segment("code", "print('hello')\nx = 2", "python"),
                  Segment("text", "That prints **hello**.")]),
    # still streaming: an open fence is code up to the end
    ("Try:\n```bash\nls -l", [Segment("text", "Try:"), Segment("code", "ls -l", "bash", closed=False)]),
    ("~~~\na ``` b\n~~~", [Segment("code", "a ``` b")]),  # another fence character does not close it
    ("````\n```\ninner\n```\n````", [Segment("code", "```\ninner\n```")]),  # a longer fence holds shorter ones
    ("", []),
])
def test_split_markdown(text, segments):
    assert split_markdown(text) == segments


def test_a_reply_renders_as_markdown_with_copyable_code(qtbot, serving_node, icons, ui_settings, tmp_path):
    node = serving_node({"FAKE_NODE_REPLY": CODE_REPLY})
    chat = make_chat(qtbot, node, icons, ui_settings, tmp_path / "c.sqlite3")
    ask(qtbot, chat, node, "How do I print?")
    reply = chat.bubbles()[-1]
    assert reply.view.isVisible() and not reply.text_label.isVisible()
    (block,) = reply.view.code_blocks()
    assert block.language_label.text() == "python" and block.code.toPlainText() == "print('hello')\nx = 2"
    texts = [w.text() for w in reply.view.parts if w is not block]
    assert texts == ["Here is how:", "That prints **hello**."]  # rendered by Qt's Markdown reader (MarkdownText)
    block.copy_button.click()
    assert QGuiApplication.clipboard().text() == "print('hello')\nx = 2" and block.copy_button.text() == "Copied"
    reply.copy_button.click()
    assert QGuiApplication.clipboard().text() == CODE_REPLY  # the whole reply, as Markdown
    user = chat.bubbles()[0]
    assert user.text_label.isVisible() and not user.view.isVisible()  # the owner's words stay plain


def test_regenerate_asks_again_and_replaces_the_last_reply(qtbot, serving_node, icons, ui_settings, tmp_path):
    record = tmp_path / "record.jsonl"
    node = serving_node({"FAKE_NODE_RECORD": str(record)})
    chat = make_chat(qtbot, node, icons, ui_settings, tmp_path / "c.sqlite3")
    ask(qtbot, chat, node, "first")
    ask(qtbot, chat, node, "second")
    bubbles = chat.bubbles()
    assert [b.regenerate_button.isVisibleTo(b) for b in bubbles if b.role == "assistant"] == [False, True]
    with qtbot.waitSignal(node.done_received, timeout=WAIT_MS):
        bubbles[-1].regenerate_button.click()
    generates = [c for c in sent_commands(record) if isinstance(c, protocol.Generate)]
    assert generates[-1].messages == generates[-2].messages  # the same question, asked again
    assert [b.role for b in chat.bubbles()] == ["user", "assistant", "user", "assistant"]
    assert [m.content for m in chat.history][::2] == ["first", "second"] and len(chat.history) == 4
    stored = chat.store.messages(chat.conversation_id)
    assert [(m.role, m.content) for m in stored] == [(m.role, m.content) for m in chat.history]


def test_conversations_are_kept_across_restarts_and_listed(qtbot, serving_node, icons, ui_settings, tmp_path):
    store_path = tmp_path / "data" / "potluck.sqlite3"
    node = serving_node({"FAKE_NODE_REPLY": "A **short** answer."})
    chat = make_chat(qtbot, node, icons, ui_settings, store_path)
    ask(qtbot, chat, node, "What is a potluck?")
    chat.new_chat_button.click()
    ask(qtbot, chat, node, "Another question entirely")
    assert chat.conversation_list.titles() == ["Another question entirely", "What is a potluck?"]
    chat.close()
    again = make_chat(qtbot, node, icons, ui_settings, store_path)  # the app started again
    assert again.bubbles() == [] and again.conversation_list.titles() == ["Another question entirely",
                                                                          "What is a potluck?"]
    again.conversation_list.select(1)
    user, reply = again.bubbles()
    assert (user.text, reply.text) == ("What is a potluck?", "A **short** answer.")
    assert reply.caption_label.text().startswith("12.5 tokens/s · 3 tokens")
    assert reply.view.parts[0].text() == "A **short** answer." and reply.regenerate_button.isVisibleTo(reply)
    ask(qtbot, again, node, "Tell me more")  # the conversation goes on where it was
    assert [m.role for m in again.store.messages(again.conversation_id)] == ["user", "assistant"] * 2


def test_deleting_a_conversation_asks_first(qtbot, serving_node, icons, ui_settings, tmp_path):
    answers = [False, True]
    node = serving_node()
    chat = make_chat(qtbot, node, icons, ui_settings, tmp_path / "c.sqlite3",
                     confirm=lambda title, question: answers.pop(0))
    ask(qtbot, chat, node, "Forget me")
    chat.conversation_list.list.setCurrentRow(0)
    chat.conversation_list.delete_button.click()  # "no"
    assert chat.conversation_list.titles() == ["Forget me"]
    chat.conversation_list.delete_button.click()  # "yes"
    assert chat.conversation_list.titles() == [] and chat.bubbles() == [] and chat.conversation_id is None


def test_a_conversation_is_renamed_from_its_list_and_keeps_its_place(qtbot, serving_node, icons, ui_settings,
                                                                     tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3", clock=iter(range(1000, 2000)).__next__)
    for text in ("older question", "newer question"):
        store.append(store.create(), StoredMessage("user", text))
    answers = ["  Trip plans\n", None, "   ", "newer question", "x" * 200]  # typed, cancelled, blank, unchanged, long
    asked = []

    def ask_title(parent, current):
        asked.append(current)
        return answers.pop(0)

    chat = make_chat(qtbot, serving_node(), icons, ui_settings, tmp_path / "c.sqlite3", ask_title=ask_title)
    listing = chat.conversation_list
    assert not listing.rename_button.isEnabled()  # nothing chosen yet
    listing.list.setCurrentRow(1)
    listing.rename_button.click()
    assert listing.titles() == ["newer question", "Trip plans"]  # renaming does not move it to the top
    for _ in range(3):  # cancelled, blank, the same name: nothing changes
        listing.list.itemDoubleClicked.emit(listing.list.item(0))
    assert asked == ["older question", "newer question", "newer question", "newer question"]
    listing.list.setCurrentRow(0)
    listing.rename_button.click()
    assert listing.titles()[0] == "x" * 48 + "…"
    again = ConversationStore(tmp_path / "c.sqlite3")
    assert [c.title for c in again.conversations()] == ["x" * 48 + "…", "Trip plans"]  # kept across restarts
    assert not chat.notice_label.isVisible()


@pytest.mark.parametrize("text, problem", [("", "at least one letter"), (" \n\t", "at least one letter")])
def test_a_blank_name_is_refused_and_the_title_stays(tmp_path, text, problem):
    store = ConversationStore(tmp_path / "c.sqlite3")
    kept = store.create()
    store.append(kept, StoredMessage("user", "What is a potluck?"))
    with pytest.raises(ValueError, match=problem):
        store.rename(kept, text)
    assert [c.title for c in store.conversations()] == ["What is a potluck?"]


def test_renaming_a_conversation_that_is_gone_says_so(qtbot, serving_node, icons, ui_settings, tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3")
    store.append(store.create(), StoredMessage("user", "Soon gone"))
    with pytest.raises(ValueError, match="gone"):
        store.rename("no-such-id", "Name")
    chat = make_chat(qtbot, serving_node(), icons, ui_settings, tmp_path / "c.sqlite3",
                     ask_title=lambda parent, current: "Another name")
    store.delete(store.conversations()[0].conversation_id)  # another window deleted it meanwhile
    chat.conversation_list.list.setCurrentRow(0)
    chat.conversation_list.rename_button.click()
    assert chat.notice_label.isVisible() and "gone" in chat.notice_label.text()
    assert chat.conversation_list.titles() == []


@pytest.mark.parametrize("how", ["close the window", "new chat", "open another conversation"])
def test_leaving_a_reply_cancels_it_on_the_node(qtbot, serving_node, icons, ui_settings, tmp_path, how):
    record = tmp_path / "record.jsonl"
    node = serving_node({"FAKE_NODE_RECORD": str(record), "FAKE_NODE_REPLY": " ".join(["word"] * 300),
                         "FAKE_NODE_TOKEN_DELAY_S": "0.05"})
    store = ConversationStore(tmp_path / "c.sqlite3")
    other = store.create()
    store.append(other, StoredMessage("user", "older"))
    chat = make_chat(qtbot, node, icons, ui_settings, tmp_path / "c.sqlite3")
    chat.input.setPlainText("Talk a lot")
    chat.send()
    request_id = chat.pending.request_id
    qtbot.waitUntil(lambda: chat.bubbles()[-1].text.startswith("word"), timeout=WAIT_MS)
    with qtbot.waitSignal(node.done_received, timeout=WAIT_MS) as done:
        if how == "close the window":
            chat.close()
        elif how == "new chat":
            chat.new_chat_button.click()
        else:
            chat.conversation_list.select(chat.conversation_list.titles().index("older"))
    assert done.args[0].stop_reason == "cancelled" and done.args[0].token_count < 300
    assert protocol.Cancel(request_id=request_id) in sent_commands(record)


def test_titles_and_times():
    assert title_from("  What is\na potluck?") == "What is"
    assert title_from("word " * 20) == "word word word word word word word word word…"
    assert title_from("") == "New chat"
    now = dt.datetime(2026, 3, 4, 15, 0)
    assert when_text(dt.datetime(2026, 3, 4, 9, 5).timestamp(), now) == "09:05"
    assert when_text(dt.datetime(2026, 3, 3, 9, 5).timestamp(), now) == "yesterday"
    assert when_text(dt.datetime(2026, 2, 27, 9, 5).timestamp(), now) == "Fri 27 Feb"
    assert when_text(dt.datetime(2025, 2, 27, 9, 5).timestamp(), now) == "27 Feb 2025"
