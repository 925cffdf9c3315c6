"""SwarmWindow: the swarm page, opened from the dashboard and the tray. Everything about the swarm this PC is in:

- who is in it: members with role, state, blocks and when last seen, and Remove for the others;
- this PC's own copy of the model, when the swarm's model is a file on another PC (or it moved here);
- invite a friend: Tailscale's state first, then a code shown large with Copy, its expiry and joins, a QR code;
- join another swarm with a code, switch to another swarm this PC knows, leave this swarm, start a new one.

It talks to the node through SwarmClient (core/protocol_swarm.py) and refreshes every few seconds while shown.
Results come back in words: a bad code or a refused removal is explained in place, never a dead end.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtGui import QClipboard
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QScrollArea, QVBoxLayout, QWidget

from potluck.app import theme
from potluck.app.icons import IconSet
from potluck.app.invite_panel import InvitePanel
from potluck.app.join_form import InviteDecoder, JoinForm
from potluck.app.model_choice import ModelPicker
from potluck.app.stat_card import card_frame, label, set_role
from potluck.app.swarm_client import SwarmClient
from potluck.app.swarm_members import Confirm, SwarmMembersTable, ask
from potluck.app.tailscale_help import Probe
from potluck.app.ui_state import UiKey, restore_geometry, save_geometry
from potluck.core import protocol

REFRESH_MS = 5000
NO_SWARM = "This PC is in no swarm"
OPS_IN_WORDS = {"join": "Joining…", "switch": "Switching…", "leave": "Leaving…", "revoke": "Removing…"}


def header_text(view: protocol.SwarmView) -> tuple[str, str]:
    """(title, the line under it) for the page's top."""
    if not view.swarm_id:
        return NO_SWARM, "Join a swarm with a code a friend sent you, or start a new one."
    origin = "You created it." if view.created_here else "You joined it."
    where = "this PC" if view.created_here else "the creator's PC"
    model = view.model_id if not view.model_is_path else f"{view.model_id} (a file on {where})"
    reach = (" This PC listens on 127.0.0.1 only: friends cannot reach it until Tailscale runs here."
             if view.listen_host.startswith("127.") else f" Friends reach this PC at {view.listen_host}."
             if view.listen_host else "")
    secret = f" The swarm's key is kept in {view.secret_where}." if view.secret_where else ""
    return f"The swarm “{view.name}”", f"Model: {model}. {origin}{reach}{secret}"


def needs_copy(view: protocol.SwarmView) -> bool:
    """Whether the page should offer to choose this PC's copy of the swarm's model."""
    return bool(view.swarm_id) and not view.this_pc_removed and \
        ((view.model_is_path and not view.created_here) or not view.model_found)


class SwarmWindow(QWidget):
    def __init__(self, client: SwarmClient, icons: IconSet, settings: QSettings, clipboard: QClipboard, *,
                 tailscale_probe: Probe, invite_decoder: InviteDecoder | None, secrets_where: str,
                 use_model_copy: Callable[[str], None], start_new_swarm: Callable[[], None],
                 confirm: Confirm = ask, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._settings = settings
        self._confirm = confirm
        self._use_model_copy = use_model_copy
        self._start_new_swarm = start_new_swarm
        self._pending: dict[str, str] = {}  # request id -> op, for the status line
        self.view = protocol.SwarmView()
        self.setWindowTitle("Potluck — Swarm")
        self.setWindowIcon(icons.app_icon())
        self.resize(900, 820)
        restore_geometry(settings, UiKey.SWARM_GEOMETRY, self)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        outer.addWidget(self.scroll)
        content = QWidget()
        self.scroll.setWidget(content)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(theme.MARGIN_PX, theme.MARGIN_PX, theme.MARGIN_PX, theme.MARGIN_PX)
        layout.setSpacing(theme.SPACING_PX + 2)
        self.title = label(NO_SWARM, "title")
        layout.addWidget(self.title)
        self.subtitle = label("", "muted", wrap=True)
        layout.addWidget(self.subtitle)
        self.status = label("", "ok", wrap=True)
        self.status.setVisible(False)
        layout.addWidget(self.status)
        self.removed_banner = label("This PC was removed from this swarm. Paste a new invite code below (Join another "
                                    "swarm) to take part again.", "error", wrap=True)
        self.removed_banner.setVisible(False)
        layout.addWidget(self.removed_banner)
        layout.addWidget(self._build_copy_section())
        self.members_frame, members = card_frame()
        members.addWidget(label("Members", "title"))
        self.members = SwarmMembersTable(self._revoke, confirm)
        members.addWidget(self.members)
        layout.addWidget(self.members_frame)
        self.invite_frame, invite = card_frame()
        invite.addWidget(label("Invite a friend", "title"))
        self.invite_panel = InvitePanel(client, clipboard, tailscale_probe)
        invite.addWidget(self.invite_panel)
        layout.addWidget(self.invite_frame)
        layout.addWidget(self._build_other_swarms(invite_decoder, tailscale_probe, secrets_where))
        layout.addStretch(1)
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(client.refresh)
        client.view_changed.connect(self.show_view)
        client.result.connect(self._on_result)
        if client.last_view is not None:
            self.show_view(client.last_view)
        else:
            self.show_view(protocol.SwarmView())

    # ------------------------------------------------------------------ building

    def _build_copy_section(self) -> QWidget:
        self.copy_frame, section = card_frame()
        section.addWidget(label("Your copy of the model", "title"))
        self.copy_intro = label("", "", wrap=True)
        section.addWidget(self.copy_intro)
        row = QHBoxLayout()
        self.copy_picker = ModelPicker()
        row.addWidget(self.copy_picker, 1)
        self.copy_button = QPushButton("Use this copy")
        self.copy_button.setObjectName("primary")
        self.copy_button.clicked.connect(self._use_copy)
        row.addWidget(self.copy_button)
        section.addLayout(row)
        self.copy_picker.changed.connect(lambda: self.copy_button.setEnabled(not self.copy_picker.problem()))
        self.copy_button.setEnabled(False)
        self.copy_frame.setVisible(False)
        return self.copy_frame

    def _build_other_swarms(self, decoder, probe, secrets_where) -> QWidget:
        frame, section = card_frame()
        section.addWidget(label("Other swarms", "title"))
        section.addWidget(label("Join another swarm with a code a friend sent you:", "", wrap=True))
        self.join_form = JoinForm(decoder, secrets_where=secrets_where, tailscale_probe=probe)
        section.addWidget(self.join_form)
        row = QHBoxLayout()
        row.addStretch(1)
        self.join_button = QPushButton("Join this swarm")
        self.join_button.setObjectName("primary")
        self.join_button.clicked.connect(self._join)
        row.addWidget(self.join_button)
        section.addLayout(row)
        self.join_form.changed.connect(self._update_join_button)
        self._update_join_button()
        self.known_title = label("Swarms this PC knows:", "")
        section.addWidget(self.known_title)
        self.known_box = QVBoxLayout()
        section.addLayout(self.known_box)
        row = QHBoxLayout()
        self.new_button = QPushButton("Start a new swarm…")
        self.new_button.clicked.connect(self._start_new_swarm)
        row.addWidget(self.new_button)
        row.addStretch(1)
        self.leave_button = QPushButton("Leave this swarm…")
        self.leave_button.clicked.connect(self._leave)
        row.addWidget(self.leave_button)
        section.addLayout(row)
        return frame

    # ------------------------------------------------------------------ showing

    def show_view(self, view: protocol.SwarmView) -> None:
        self.view = view
        title, subtitle = header_text(view)
        self.title.setText(title)
        self.subtitle.setText(subtitle)
        in_swarm = bool(view.swarm_id)
        self.removed_banner.setVisible(view.this_pc_removed)
        self.members_frame.setVisible(in_swarm)
        self.invite_frame.setVisible(in_swarm and not view.this_pc_removed)
        self.leave_button.setVisible(in_swarm)
        if in_swarm:
            self.members.set_members(view.members, may_remove=not view.this_pc_removed)
        self.invite_panel.show_invites(view)
        self._show_copy(view)
        self._show_known(view)

    def _show_copy(self, view: protocol.SwarmView) -> None:
        shown = needs_copy(view)
        self.copy_frame.setVisible(shown)
        if not shown:
            return
        where = "It is a file on the PC that created the swarm" if not view.created_here else "It is not found here"
        found = f" This PC serves {view.model_here}." if view.model_found else \
            f" This PC has no copy at {view.model_here} yet: choose where the same model is on this PC."
        self.copy_intro.setText(f"The swarm runs {view.model_id}. {where}.{found} Potluck checks that your copy is "
                                "the same model before serving it.")
        if not self.copy_picker.text() and view.model_found:
            self.copy_picker.set_text(view.model_here)

    def _show_known(self, view: protocol.SwarmView) -> None:
        while self.known_box.count():
            item = self.known_box.takeAt(0)
            if item.layout() is not None:
                while item.layout().count():
                    inner = item.layout().takeAt(0)
                    if inner.widget() is not None:
                        inner.widget().deleteLater()
        others = [k for k in view.known if k.swarm_id != view.swarm_id]
        self.known_title.setVisible(bool(others))
        for known in others:
            row = QHBoxLayout()
            row.addWidget(label(f"{known.name} · {known.model_id}", ""), 1)
            if known.this_pc_removed:
                row.addWidget(label("removed: needs a new code", "muted"))
            else:
                button = QPushButton("Switch to it")
                button.setObjectName(f"switch-{known.swarm_id}")
                button.clicked.connect(lambda _checked=False, k=known: self._switch(k))
                row.addWidget(button)
            self.known_box.addLayout(row)

    def show_section(self, section: str) -> None:
        """Scroll to 'invite' (and focus Create) or 'join' (and focus the code box)."""
        target = {"invite": self.invite_frame, "join": self.join_form}.get(section)
        if target is not None and target.isVisible():
            self.scroll.ensureWidgetVisible(target, 0, 0)
        if section == "invite":
            self.invite_panel.create_button.setFocus()
        elif section == "join":
            self.join_form.code_edit.setFocus()

    def _say(self, text: str, ok: bool) -> None:
        self.status.setText(text)
        set_role(self.status, "ok" if ok else "error")
        self.status.setVisible(bool(text))

    # ------------------------------------------------------------------ actions

    def _track(self, request_id: str, op: str) -> None:
        self._pending[request_id] = op
        self._say(OPS_IN_WORDS.get(op, ""), True)
        self._update_join_button()

    def _revoke(self, peer_id: str) -> None:
        self._track(self._client.revoke(peer_id), "revoke")

    def _join(self) -> None:
        self._track(self._client.join(self.join_form.code(), self.join_form.own_model()), "join")

    def _switch(self, known: protocol.KnownSwarm) -> None:
        if self._confirm(f"Switch to {known.name}?", f"This PC stops serving “{self.view.name}” and serves "
                                                     f"“{known.name}” instead. You can switch back at any time."):
            self._track(self._client.switch(known.swarm_id), "switch")

    def _leave(self) -> None:
        extra = " You created it: the others can go on without you." if self.view.created_here else ""
        if self._confirm(f"Leave {self.view.name}?", f"This PC stops serving “{self.view.name}” and forgets its key."
                                                     f"{extra} To come back you need a new invite code."):
            self._track(self._client.leave(), "leave")

    def _use_copy(self) -> None:
        self._use_model_copy(self.copy_picker.text())
        self._say("Using your copy: the node opens it and checks that it is the swarm's model.", True)

    def _update_join_button(self) -> None:
        busy = any(op == "join" for op in self._pending.values())
        self.join_button.setEnabled(self.join_form.is_complete() and not busy)

    def _on_result(self, result: protocol.SwarmResult) -> None:
        op = self._pending.pop(result.request_id, None)
        if op is None:
            return
        self._say(result.message or ("Done." if result.ok else "That did not work."), result.ok)
        if op == "join" and result.ok:
            self.join_form.code_edit.clear()
        self._update_join_button()

    # ------------------------------------------------------------------ window

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._client.refresh()
        self._timer.start()
        if self.invite_panel.tailscale.report is None:
            self.invite_panel.tailscale.check()

    def hideEvent(self, event) -> None:
        self._timer.stop()
        super().hideEvent(event)

    def closeEvent(self, event) -> None:
        save_geometry(self._settings, UiKey.SWARM_GEOMETRY, self)
        super().closeEvent(event)
