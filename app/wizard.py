"""FirstRunWizard: create a swarm (a model by Hugging Face id or local folder, a name) or join one by pasting an
invite code, then start the node and show, in plain words, how many blocks this PC will host and why.

Invite codes are checked as they are typed with core.swarm.invite (pure standard library); errors appear under the
box and Next stays disabled until the code is good.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from potluck.app import theme
from potluck.app.config_store import AppConfig, SwarmMode
from potluck.app.formatting import status_line
from potluck.app.node_process import NodeProcess
from potluck.app.stat_card import card_frame, label
from potluck.core.protocol import NodeState, Sizing
from potluck.core.swarm.invite import InviteError, decode_invite

HF_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}")
INVITE_MODULE_MISSING = ("Invite codes cannot be checked: this copy of Potluck lacks its invite module "
                         "(core.swarm.invite). Reinstall Potluck, or create a swarm instead.")

PAGE_WELCOME, PAGE_CREATE, PAGE_JOIN, PAGE_READY = range(4)

InviteDecoder = Callable[[str], Any]


def real_invite_decoder() -> InviteDecoder:
    """core/swarm/invite.py's decode_invite wrapped to raise ValueError(message)."""
    def decode(code: str):
        try:
            return decode_invite(code)
        except InviteError as exc:
            raise ValueError(str(exc)) from None

    return decode


def model_problem(text: str) -> str:
    """Why `text` is not a usable model reference, or '' if it is (a HF id like org/name, or a local folder)."""
    text = text.strip()
    if not text:
        return "Enter a Hugging Face model id (like org/model-name) or choose a folder."
    looks_local = text.startswith(("/", "~", ".", "\\")) or re.match(r"[A-Za-z]:[\\/]", text) is not None
    if looks_local:
        folder = Path(text).expanduser()
        if not folder.is_dir():
            return f"There is no folder at {folder}."
        if not (folder / "config.json").is_file():
            return "That folder has no config.json: choose the folder that holds the model's files."
        return ""
    if not HF_ID.fullmatch(text):
        return "A Hugging Face id looks like org/model-name."
    return ""


def page_title(text: str) -> str:
    return f"<span style='font-size:{theme.TITLE_POINT_SIZE}pt; font-weight:600'>{text}</span>"


def invite_summary(invite: Any) -> str:
    swarm = getattr(invite, "swarm_name", "")
    model = getattr(invite, "model_id", "")
    text = f"Valid code for the swarm “{swarm}”" if swarm else "Valid code"
    return text + (f" · model {model}" if model else "")


class WelcomePage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle(page_title("Welcome to Potluck"))
        self.setSubTitle("Pool your PCs with friends to run a large language model none of you could run alone.")
        layout = QVBoxLayout(self)
        layout.setSpacing(14)
        self.create_button = QRadioButton("Start a new swarm")
        self.join_button = QRadioButton("Join friends with an invite code")
        self.join_button.setChecked(True)
        for button in (self.create_button, self.join_button):
            font = button.font()
            font.setPointSize(theme.BASE_POINT_SIZE + 1)
            font.setWeight(font.Weight.DemiBold)
            button.setFont(font)
        group = QButtonGroup(self)
        for button, hint in (
            (self.join_button, "A friend sent you a code that starts with “potluck-”."),
            (self.create_button, "Pick the model; then invite friends from the tray menu."),
        ):
            group.addButton(button)
            layout.addWidget(button)
            hint_label = label(hint, "muted", wrap=True)
            hint_label.setContentsMargins(26, 0, 0, 0)
            layout.addWidget(hint_label)
        layout.addStretch(1)

    def nextId(self) -> int:
        return PAGE_CREATE if self.create_button.isChecked() else PAGE_JOIN


class CreatePage(QWizardPage):
    def __init__(self, default_pc_name: str) -> None:
        super().__init__()
        self.setTitle(page_title("Start a new swarm"))
        self.setSubTitle("Choose the model the swarm will run. Each PC hosts only some of its blocks.")
        form = QFormLayout(self)
        form.setSpacing(10)
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("org/model-name or a folder")
        browse = QPushButton("Choose folder…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.model_edit, 1)
        row.addWidget(browse)
        form.addRow("Model", row)
        self.model_error = label("", "error", wrap=True)
        form.addRow("", self.model_error)
        self.swarm_name_edit = QLineEdit()
        self.swarm_name_edit.setPlaceholderText("Friday night LLM")
        self.swarm_name_edit.setMaxLength(64)
        form.addRow("Swarm name", self.swarm_name_edit)
        self.pc_name_edit = QLineEdit(default_pc_name)
        self.pc_name_edit.setMaxLength(64)
        form.addRow("This PC's name", self.pc_name_edit)
        self.model_edit.textChanged.connect(self._validate)
        self._validate()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the model's folder")
        if folder:
            self.model_edit.setText(folder)

    def _validate(self) -> None:
        problem = model_problem(self.model_edit.text())
        typed = bool(self.model_edit.text().strip())
        self.model_error.setText(problem if typed else "")
        self.model_edit.setProperty("invalid", bool(problem) and typed)
        self.model_edit.style().polish(self.model_edit)
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return not model_problem(self.model_edit.text())

    def nextId(self) -> int:
        return PAGE_READY


class JoinPage(QWizardPage):
    def __init__(self, decoder: InviteDecoder | None, default_pc_name: str) -> None:
        super().__init__()
        self._decoder = decoder
        self.invite: Any = None
        self.setTitle(page_title("Join a swarm"))
        self.setSubTitle("Paste the invite code your friend sent you.")
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        self.code_edit = QPlainTextEdit()
        self.code_edit.setPlaceholderText("potluck-…")
        self.code_edit.setFixedHeight(110)
        layout.addWidget(self.code_edit)
        self.feedback = label("", "muted", wrap=True)
        layout.addWidget(self.feedback)
        form = QFormLayout()
        self.pc_name_edit = QLineEdit(default_pc_name)
        self.pc_name_edit.setMaxLength(64)
        form.addRow("This PC's name", self.pc_name_edit)
        layout.addLayout(form)
        layout.addWidget(label("The code holds a secret: Potluck keeps it in your system's keyring.", "muted", wrap=True))
        layout.addStretch(1)
        self.code_edit.textChanged.connect(self._validate)
        self._validate()

    def code(self) -> str:
        return self.code_edit.toPlainText().strip()

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
        self.completeChanged.emit()

    def _feedback(self, text: str, role: str) -> None:
        self.feedback.setText(text)
        self.feedback.setObjectName(role)
        self.feedback.style().unpolish(self.feedback)
        self.feedback.style().polish(self.feedback)

    def isComplete(self) -> bool:
        return self.invite is not None

    def nextId(self) -> int:
        return PAGE_READY


class ReadyPage(QWizardPage):
    """Applies the choices (saves them, starts the node) and shows what the node decided."""
    def __init__(self, node: NodeProcess, apply: Callable[[], None]) -> None:
        super().__init__()
        self._node = node
        self._apply = apply
        self.setTitle(page_title("Getting ready"))
        self.setSubTitle("Potluck is starting. You can close this window; it keeps running in the tray.")
        layout = QVBoxLayout(self)
        layout.setSpacing(12)
        self.state_label = label("", "", wrap=True)
        font = self.state_label.font()
        font.setWeight(font.Weight.DemiBold)
        self.state_label.setFont(font)
        layout.addWidget(self.state_label)
        frame, card = card_frame()
        card.addWidget(label("Why this many blocks", "title"))
        self.sizing_label = label("Working out how many blocks this PC can host…", "", wrap=True)
        self.sizing_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        card.addWidget(self.sizing_label)
        layout.addWidget(frame)
        layout.addWidget(label("You can limit the memory Potluck uses at any time in Settings.", "muted", wrap=True))
        layout.addStretch(1)
        node.sizing_received.connect(self._show_sizing)
        node.state_changed.connect(self._show_state)
        node.stats_received.connect(lambda _stats: self._show_state(self._node.state))

    def initializePage(self) -> None:
        self._apply()
        self._show_state(self._node.state)
        if self._node.last_sizing is not None:
            self._show_sizing(self._node.last_sizing)

    def _show_sizing(self, sizing: Sizing) -> None:
        self.sizing_label.setText(sizing.explanation)

    def _show_state(self, state: NodeState) -> None:
        text = status_line(state, self._node.last_stats, self._node.detail)
        if state is NodeState.FAILED:
            text = f"The node could not start: {self._node.detail}"
        self.state_label.setText(text)


class FirstRunWizard(QWizard):
    def __init__(
        self,
        node: NodeProcess,
        on_finish: Callable[[AppConfig, str | None], None],
        invite_decoder: InviteDecoder | None,
        default_pc_name: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """on_finish(config, invite_code) saves the choices and starts the node (invite_code is None for create)."""
        super().__init__(parent)
        self._on_finish = on_finish
        pc_name = (default_pc_name if default_pc_name is not None else socket.gethostname())[:64]
        self.setWindowTitle("Set up Potluck")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setTitleFormat(Qt.TextFormat.RichText)
        self.setSubTitleFormat(Qt.TextFormat.RichText)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage)
        self.welcome = WelcomePage()
        self.create_page = CreatePage(pc_name)
        self.join_page = JoinPage(invite_decoder, pc_name)
        self.ready_page = ReadyPage(node, self._apply)
        for page_id, page in ((PAGE_WELCOME, self.welcome), (PAGE_CREATE, self.create_page),
                              (PAGE_JOIN, self.join_page), (PAGE_READY, self.ready_page)):
            self.setPage(page_id, page)
        self.setStartId(PAGE_WELCOME)
        self.resize(700, 540)

    def set_logo(self, icon) -> None:
        self.setPixmap(QWizard.WizardPixmap.LogoPixmap, icon.pixmap(56, 56))

    def chosen_config(self) -> tuple[AppConfig, str | None]:
        if self.welcome.create_button.isChecked():
            page = self.create_page
            config = AppConfig(mode=SwarmMode.CREATE, model=page.model_edit.text().strip(),
                               swarm_name=page.swarm_name_edit.text().strip(), pc_name=page.pc_name_edit.text().strip())
            return config, None
        page = self.join_page
        invite = page.invite
        config = AppConfig(mode=SwarmMode.JOIN, model=str(getattr(invite, "model_id", "")),
                           swarm_name=str(getattr(invite, "swarm_name", "")), pc_name=page.pc_name_edit.text().strip())
        return config, page.code()

    def _apply(self) -> None:
        config, code = self.chosen_config()
        self._on_finish(config, code)
