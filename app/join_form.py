"""JoinForm: paste an invite code, see at once what is wrong with it, and (when the code's model is a file on the
friend's PC) choose this PC's own copy of that model. Used by the wizard's join page and the swarm page.

The code is checked as it is typed (app/words.code_problem: a cut-short code is "incomplete", a changed character
"a typo"); whether its addresses can work from here is checked against Tailscale (app/tailscale_help); the form
is complete when the code is good and, if the model is a path not on this PC, a copy is chosen.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFormLayout, QLineEdit, QPlainTextEdit, QVBoxLayout, QWidget

from potluck.app.background import run_in_background
from potluck.app.model_choice import ModelPicker, builtin_model, looks_local
from potluck.app.stat_card import label, set_role
from potluck.app.tailscale_help import LOOPBACK_CODE, Probe, advice_html, code_reach_problem
from potluck.app.words import code_problem
from potluck.core.model import builtin
from potluck.core.swarm.invite import decode_invite

InviteDecoder = Callable[[str], Any]
INVITE_MODULE_MISSING = ("Invite codes cannot be checked: this copy of Potluck lacks its invite module "
                         "(core.swarm.invite). Reinstall Potluck, or create a swarm instead.")


def real_invite_decoder() -> InviteDecoder:
    """core/swarm/invite.py's decode_invite, raising ValueError(words) with a cut-short code called incomplete."""
    def decode(code: str):
        problem = code_problem(code)
        if problem:
            raise ValueError(problem)
        return decode_invite(code)

    return decode


def invite_summary(invite: Any) -> str:
    swarm = getattr(invite, "swarm_name", "")
    model = getattr(invite, "model_id", "")
    text = f"Valid code for the swarm “{swarm}”" if swarm else "Valid code"
    if model and looks_local(model):
        return text + f" · model {Path(model).name} (a file on your friend's PC)"
    return text + (f" · model {model}" if model else "")


def suggested_copy(model_id: str, builtin_path: str) -> str:
    """Where this PC probably has the swarm's model: the same path if it exists here, else Potluck's built-in
    model when the friend's file is the built-in one, else ''."""
    if os.path.exists(os.path.expanduser(model_id)):
        return model_id
    if builtin_path and Path(model_id).name == builtin.FILE_NAME:
        return builtin_path
    return ""


class JoinForm(QWidget):
    changed = Signal()  # the code, the copy or their checks changed: read is_complete()

    def __init__(self, decoder: InviteDecoder | None, *, default_pc_name: str | None = None, secrets_where: str = "",
                 tailscale_probe: Probe | None = None, builtin_path: Callable[[], str] = builtin_model,
                 run_async=run_in_background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._decoder = decoder
        self._probe = tailscale_probe
        self._run_async = run_async
        self._report = None  # the last Tailscale report, once asked
        self.reach_text = ""  # why the code's addresses may not work from here ('' when nothing is known wrong)
        self._builtin = builtin_path()
        self.invite: Any = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        self.code_edit = QPlainTextEdit()
        self.code_edit.setPlaceholderText("potluck-…")
        self.code_edit.setFixedHeight(96)
        layout.addWidget(self.code_edit)
        self.feedback = label("", "muted", wrap=True)
        layout.addWidget(self.feedback)
        self.reach = label("", "error", wrap=True)
        self.reach.setTextFormat(Qt.TextFormat.RichText)
        self.reach.setOpenExternalLinks(True)
        self.reach.setVisible(False)
        layout.addWidget(self.reach)
        self.copy_box = QWidget()
        copy_layout = QVBoxLayout(self.copy_box)
        copy_layout.setContentsMargins(0, 0, 0, 0)
        self.copy_intro = label("", "", wrap=True)
        copy_layout.addWidget(self.copy_intro)
        self.copy_picker = ModelPicker(builtin_path=lambda: self._builtin)
        copy_layout.addWidget(self.copy_picker)
        self.copy_box.setVisible(False)
        layout.addWidget(self.copy_box)
        self.pc_name_edit = QLineEdit(default_pc_name or "")
        self.pc_name_edit.setMaxLength(64)
        if default_pc_name is not None:
            form = QFormLayout()
            form.addRow("This PC's name", self.pc_name_edit)
            layout.addLayout(form)
        self.secret_note = label(f"The code holds the swarm's key: Potluck keeps it in {secrets_where}."
                                 if secrets_where else "", "muted", wrap=True)
        self.secret_note.setVisible(bool(secrets_where))
        layout.addWidget(self.secret_note)
        self.code_edit.textChanged.connect(self._validate)
        self.copy_picker.changed.connect(self.changed.emit)
        self._validate()

    # ------------------------------------------------------------------ reading

    def code(self) -> str:
        return self.code_edit.toPlainText().strip()

    def needs_copy(self) -> bool:
        return self.invite is not None and looks_local(getattr(self.invite, "model_id", ""))

    def own_model(self) -> str:
        """This PC's copy of the swarm's model ('' when the swarm's model id is used as it is)."""
        return self.copy_picker.text() if self.needs_copy() else ""

    def is_complete(self) -> bool:
        return self.invite is not None and (not self.needs_copy() or not self.copy_picker.problem())

    # ------------------------------------------------------------------ checking

    def _validate(self) -> None:
        self.invite = None
        code = self.code()
        if self._decoder is None:
            self._feedback(INVITE_MODULE_MISSING, "error")
        elif not code:
            self._feedback("", "muted")
        else:
            try:
                self.invite = self._decoder(code)
            except ValueError as exc:
                self._feedback(str(exc), "error")
            else:
                self._feedback(invite_summary(self.invite), "ok")
        self._show_copy()
        self._check_reach()
        self.changed.emit()

    def _feedback(self, text: str, role: str) -> None:
        self.feedback.setText(text)
        set_role(self.feedback, role)

    def _show_copy(self) -> None:
        needed = self.needs_copy()
        self.copy_box.setVisible(needed)
        if not needed:
            return
        model_id = self.invite.model_id
        self.copy_intro.setText(f"The swarm's model is a file on your friend's PC ({model_id}). Choose this PC's copy "
                                "of the same model; Potluck checks that it is the same before serving it.")
        if not self.copy_picker.text():
            self.copy_picker.set_text(suggested_copy(model_id, self._builtin))

    def _check_reach(self) -> None:
        bootstrap = tuple(getattr(self.invite, "bootstrap", ()) or ())
        self._show_reach(code_reach_problem(bootstrap, self._report))
        if bootstrap and self._probe is not None and self._report is None and \
                code_reach_problem(bootstrap, None) == "" and any(m.startswith("/ip4/100.") for m in bootstrap):
            self._run_async(self._probe, self._reported, lambda _error: None)

    def _reported(self, report) -> None:
        self._report = report
        self._show_reach(code_reach_problem(tuple(getattr(self.invite, "bootstrap", ()) or ()), report))

    def _show_reach(self, text: str) -> None:
        self.reach.setText(advice_html(text))
        self.reach_text = text
        set_role(self.reach, "muted" if text == LOOPBACK_CODE else "error")  # a note, not a fault: it may be meant
        self.reach.setVisible(bool(text))
