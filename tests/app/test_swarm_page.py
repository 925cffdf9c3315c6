"""The swarm page, against the fake node (the real protocol): members with role, state, blocks and last seen;
remove; invite (the code shown large with Copy, expiry, joins and a QR code; refused without Tailscale unless
"this PC only"); cancel a code; join another swarm (a bad code explained, a failure leaving the settings as they
were, this PC's own copy of a model that is a file on the friend's PC); switch; leave; a removed PC told so."""

from __future__ import annotations

import hashlib
import time

from PySide6.QtWidgets import QApplication

from potluck.app.config_store import AppConfig, SwarmMode, load_config, save_config
from potluck.app.swarm_members import last_seen_text, member_rows
from potluck.core import protocol
from potluck.core.protocol import NodeState
from potluck.core.swarm import codec, invite
from tests.app.node_records import sent_commands
from tests.app.test_app import context, make_app, record_of  # noqa: F401  (fixtures)
from tests.app.test_wizard import valid_invite_code

WAIT_MS = 15_000


def code_for(model_id: str, swarm_id: str = "0aa1bb2cc3dd4ee5", host: str = "100.101.1.1") -> str:
    peer = codec.b58encode(b"\x12\x20" + hashlib.sha256(b"ana").digest())
    return invite.encode_invite(invite.Invite(
        swarm_name="Ana's club", swarm_id=swarm_id, model_id=model_id, model_revision="",
        bootstrap=(f"/ip4/{host}/tcp/31337/p2p/{peer}",), credential=bytes(range(16)),
        expires_at=int(time.time()) + 86_400))


def open_page(qtbot, context, make_app, env: dict | None = None, config: AppConfig | None = None):  # noqa: F811
    context.base_environment = {**context.base_environment, **(env or {})}
    save_config(context.config_path, config or AppConfig(mode=SwarmMode.CREATE, model="org/tiny-demo",
                                                         swarm_name="Friday night", pc_name="Sam's desktop"))
    app = make_app(context)
    app.launch()
    qtbot.waitUntil(lambda: app.node.state in (NodeState.SERVING, NodeState.FAILED), timeout=WAIT_MS)
    app.show_swarm()
    page = app.swarm_window
    qtbot.waitUntil(lambda: bool(page.view.swarm_id or page.view.known), timeout=WAIT_MS)
    return app, page


def test_members_with_role_state_blocks_and_last_seen_and_remove(qtbot, context, make_app):  # noqa: F811
    app, page = open_page(qtbot, context, make_app)
    assert page.title.text() == "The swarm “Friday night”" and "You created it." in page.subtitle.text()
    assert page.members.row_texts() == [
        ("Sam's desktop (this PC)", "Owner", "Serving", "12–23", "now"),
        ("Ana's desktop", "Member", "Serving", "0–13", "now"),
        ("Ben's mini PC", "Admin", "Serving", "20–27", "now"),
        ("Cho's laptop", "Member", "Offline", "—", "3 h 0 min ago"),
    ]
    ben = next(m for m in page.view.members if m.name == "Ben's mini PC")
    assert page.members.remove_button(page.view.peer_id) is None  # not this PC
    page.members.remove_button(ben.peer_id).click()  # the context's confirm answers yes
    qtbot.waitUntil(lambda: page.status.text().startswith("Ben's mini PC was removed"), timeout=WAIT_MS)
    assert ("Ben's mini PC", "Admin", "Removed", "—", "—") in page.members.row_texts()
    assert any(isinstance(c, protocol.Revoke) and c.peer_id == ben.peer_id for c in sent_commands(record_of(context)))


def test_member_rows_and_last_seen_in_words():
    now = 10_000.0
    rows = member_rows([protocol.SwarmMember(peer_id="QmOld", name="", last_seen=now - 90),
                        protocol.SwarmMember(peer_id="QmNew", name="New", online=True, state="draining",
                                             start_block=3, end_block=4, role="admin", this_pc=True)], now)
    assert rows == [("New (this PC)", "Admin", "Finishing up", "3", "now"), ("QmOld", "Member", "Offline", "—", "1 min ago")]
    assert last_seen_text(protocol.SwarmMember(peer_id="Qm", name=""), now) == "not since this PC started"


def test_invite_shows_the_code_large_with_copy_expiry_joins_and_qr(qtbot, context, make_app):  # noqa: F811
    app, page = open_page(qtbot, context, make_app)
    panel = page.invite_panel
    qtbot.waitUntil(lambda: panel.tailscale.report is not None, timeout=WAIT_MS)  # asked before any code is made
    assert "https://tailscale.com/download" in panel.tailscale.advice.text()
    panel.uses.setValue(2)
    panel.expiry.setCurrentIndex(1)  # 1 day
    panel.create_button.click()
    qtbot.waitUntil(lambda: panel.made is not None, timeout=WAIT_MS)
    code = panel.code_view.toPlainText()
    assert code.startswith("potluck-") and invite.decode_invite(code).max_uses == 2
    assert panel.code_view.font().pointSize() >= 12 and panel.code_card.isVisible()
    assert "works until" in panel.details.text().lower() and "(in 23 h 59 min)" in panel.details.text()
    assert "for 2 joins" in panel.details.text() and "100.101.1.7" in panel.details.text()
    assert not panel.qr_label.pixmap().isNull() and panel.qr_label.pixmap().width() > 150
    QApplication.clipboard().setText("")
    panel.copy_button.click()
    assert QApplication.clipboard().text() == code and "Copied" in panel.copied_label.text()
    cancel = page.findChild(type(panel.create_button), f"cancel-{panel.made.invite_id}")
    qtbot.waitUntil(lambda: page.findChild(type(panel.create_button), f"cancel-{panel.made.invite_id}") is not None,
                    timeout=WAIT_MS)
    cancel = page.findChild(type(panel.create_button), f"cancel-{panel.made.invite_id}")
    cancel.click()
    qtbot.waitUntil(lambda: any(i.cancelled for i in page.view.invites), timeout=WAIT_MS)


def test_without_tailscale_a_code_is_refused_unless_this_pc_only(qtbot, context, make_app):  # noqa: F811
    app, page = open_page(qtbot, context, make_app, {"FAKE_NODE_LOOPBACK": "1"})
    panel = page.invite_panel
    panel.create_button.click()
    qtbot.waitUntil(lambda: panel.error_label.isVisible(), timeout=WAIT_MS)
    assert "127.0.0.1 only" in panel.error_label.text() and "tick “This PC only”" in panel.error_label.text()
    assert panel.made is None and panel.create_button.isEnabled()
    panel.this_pc_only.setChecked(True)
    panel.create_button.click()
    qtbot.waitUntil(lambda: panel.made is not None, timeout=WAIT_MS)
    assert panel.made.this_pc_only and "this PC only (127.0.0.1)" in panel.details.text()


def test_join_another_swarm_bad_code_failure_and_success(qtbot, context, make_app):  # noqa: F811
    app, page = open_page(qtbot, context, make_app)
    form = page.join_form
    good = valid_invite_code(swarm_name="Book club 2")
    form.code_edit.setPlainText(good[:-25])
    assert "incomplete" in form.feedback.text() and not page.join_button.isEnabled()
    form.code_edit.setPlainText(good)
    assert page.join_button.isEnabled()
    page.join_button.click()
    qtbot.waitUntil(lambda: page.view.name == "Book club 2", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: load_config(context.config_path).swarm_id == "0123456789abcdef", timeout=WAIT_MS)
    config = load_config(context.config_path)
    assert (config.mode, config.swarm_name, config.model, config.pc_name) == \
        (SwarmMode.JOIN, "Book club 2", "org/tiny-llama", "Sam's desktop")
    assert page.status.text() == "Joined “Book club 2”." and form.code() == ""
    join = next(c for c in sent_commands(record_of(context)) if isinstance(c, protocol.Join))
    assert join.code == good


def test_a_failed_join_says_why_and_changes_nothing(qtbot, context, make_app):  # noqa: F811
    env = {"FAKE_NODE_JOIN_ERROR": "Could not join: This code has already been used (1 of 1 joins): ask your "
                                   "friend for a new one."}
    app, page = open_page(qtbot, context, make_app, env)
    before = load_config(context.config_path)
    page.join_form.code_edit.setPlainText(valid_invite_code())
    page.join_button.click()
    qtbot.waitUntil(lambda: "already been used" in page.status.text(), timeout=WAIT_MS)
    assert page.status.objectName() == "error" and page.join_button.isEnabled()  # paste another code and retry
    assert load_config(context.config_path) == before and page.view.name == "Friday night"


def test_a_code_whose_model_is_a_file_on_the_friends_pc_asks_for_this_pcs_copy(qtbot, context, make_app, tmp_path):  # noqa: F811
    app, page = open_page(qtbot, context, make_app)
    form = page.join_form
    form.code_edit.setPlainText(code_for("/home/ana/models/club-model.gguf"))
    assert form.copy_box.isVisible() and "/home/ana/models/club-model.gguf" in form.copy_intro.text()
    assert not page.join_button.isEnabled()  # no copy chosen yet
    copy = tmp_path / "my-copy.gguf"
    copy.write_bytes(b"GGUF")
    form.copy_picker.set_text(str(copy))
    assert page.join_button.isEnabled()
    page.join_button.click()
    qtbot.waitUntil(lambda: load_config(context.config_path).swarm_id == "0aa1bb2cc3dd4ee5", timeout=WAIT_MS)
    assert load_config(context.config_path).model == str(copy)
    join = next(c for c in sent_commands(record_of(context)) if isinstance(c, protocol.Join))
    assert join.model == str(copy)


def test_switch_to_a_known_swarm_and_leave(qtbot, context, make_app):  # noqa: F811
    app, page = open_page(qtbot, context, make_app)
    switch = page.findChild(type(page.join_button), "switch-00112233aabbccdd")
    switch.click()
    qtbot.waitUntil(lambda: page.view.name == "Book club", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: load_config(context.config_path).swarm_id == "00112233aabbccdd", timeout=WAIT_MS)
    assert load_config(context.config_path).mode is SwarmMode.JOIN
    page.leave_button.click()
    qtbot.waitUntil(lambda: page.view.swarm_id == "", timeout=WAIT_MS)
    assert page.title.text() == "This PC is in no swarm" and not page.members_frame.isVisible()
    assert not context.config_path.exists() and app.config is None
    app.show_dashboard()  # nothing is set up any more: the wizard comes back
    assert app.wizard is not None and app.wizard.isVisible()


def test_a_removed_pc_is_told_and_can_paste_a_new_code(qtbot, context, make_app):  # noqa: F811
    app, page = open_page(qtbot, context, make_app, {"FAKE_NODE_REMOVED": "1"})
    qtbot.waitUntil(lambda: page.view.this_pc_removed, timeout=WAIT_MS)
    assert app.node.state is NodeState.FAILED and "removed from the swarm “Friday night”" in app.node.detail
    assert page.removed_banner.isVisible() and not page.invite_frame.isVisible()
    assert page.members.remove_button(page.view.members[1].peer_id) is None  # a removed PC removes no one
    app.tray.rebuild_menu()
    assert app.tray.action("new_code") is not None
    page.join_form.code_edit.setPlainText(code_for("org/tiny-llama", swarm_id="1111222233334444"))
    page.join_button.click()
    qtbot.waitUntil(lambda: page.view.name == "Ana's club" and not page.view.this_pc_removed, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: app.node.state is NodeState.SERVING, timeout=WAIT_MS)


def test_invite_from_the_tray_opens_the_invite_section_in_plain_words_when_not_in_a_swarm(qtbot, context, make_app):  # noqa: F811
    app, page = open_page(qtbot, context, make_app, {"FAKE_NODE_SWARM": "none"})
    app.tray.invite_friend()
    assert app.swarm_window.isVisible()
    assert page.title.text() == "This PC is in no swarm" and "Join a swarm with a code" in page.subtitle.text()
    page.invite_panel.create_button.click()  # the panel is hidden here; the node answers in words anyway
    qtbot.waitUntil(lambda: page.invite_panel.error_label.text() != "", timeout=WAIT_MS)
    assert page.invite_panel.error_label.text().startswith("This PC is not in a running swarm yet")
    assert "potluck" not in page.invite_panel.error_label.text().lower()  # no command-line words


def test_only_whom_this_pcs_role_may_remove_gets_a_remove_button():
    from potluck.app.swarm_members import removable

    def members(my_role: str, roles=("owner", "admin", "member")):
        listed = [protocol.SwarmMember(peer_id="QmMe", name="me", role=my_role, this_pc=True)]
        listed += [protocol.SwarmMember(peer_id=f"Qm{role}", name=role, role=role) for role in roles]
        return listed

    assert removable(members("owner", ("admin", "member"))) == {"Qmadmin", "Qmmember"}
    assert removable(members("admin")) == {"Qmmember"}
    assert removable(members("member")) == set()
    assert removable(members("member", ("member", "member"))) == {"Qmmember"}  # a list without roles: as before
