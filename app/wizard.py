"""FirstRunWizard: create a swarm (a model by Hugging Face id, folder, .gguf file or the built-in model, and a name)
or join one by pasting an invite code, then start the node and show, in plain words, how many blocks this PC will
host and why.

Before any code is made, the create page says whether friends will be able to reach this PC (Tailscale, with links
to fix what is missing). Invite codes are checked as they are typed (app/join_form.py); when the code's model is a
file on the friend's PC, the join page asks for this PC's copy. The last page starts the node: if joining fails
(a used or cancelled code, an unreachable friend), it says why and Back leads to the code again. The app saves
the settings only once the node is in the swarm, so closing the wizard after a failure leaves nothing half set up.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QFormLayout,
    QLineEdit,
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
from potluck.app.join_form import (  # noqa: F401  (re-exported: the app and its tests import them from here)
    INVITE_MODULE_MISSING,
    InviteDecoder,
    JoinForm,
    invite_summary,
    real_invite_decoder,
)
from potluck.app.load_progress import LoadProgress
from potluck.app.model_catalog import ModelCatalog
from potluck.app.model_choice import ModelPicker, builtin_model, model_problem  # noqa: F401  (settings.py uses them)
from potluck.app.node_process import NodeProcess
from potluck.app.stat_card import card_frame, label, set_role
from potluck.app.tailscale_help import Probe, TailscalePanel
from potluck.app.words import sentence
from potluck.core.protocol import NodeState, Sizing
from potluck.core.swarm.tailscale import tailscale_state

PAGE_WELCOME, PAGE_CREATE, PAGE_JOIN, PAGE_READY = range(4)

READY_WORDS = {  # state -> (title, subtitle) of the last page
    NodeState.SERVING: ("Ready", ("This PC serves its share of the swarm. You can close this window: Potluck keeps "
                                  "running in the tray.")),
    NodeState.PAUSED: ("Ready, paused", "This PC is in the swarm and paused. Resume serving from the tray."),
    NodeState.FAILED: ("Not ready", ("Potluck could not start, and nothing is saved until it does. Go Back to correct "
                                     "what the message says, or close this window and set Potluck up later.")),
}
STARTING_WORDS = ("Getting ready", "Potluck is joining the swarm and loading its share of the model. You can close "
                                   "this window: Potluck keeps running in the tray.")


def page_title(text: str) -> str:
    return f"<span style='font-size:{theme.TITLE_POINT_SIZE}pt; font-weight:600'>{text}</span>"


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
            (self.create_button, "Pick the model; then invite friends from the Swarm page."),
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
    def __init__(self, default_pc_name: str, tailscale_probe: Probe) -> None:
        super().__init__()
        self.setTitle(page_title("Start a new swarm"))
        self.setSubTitle("Choose the model the swarm will run. Each PC hosts only some of its blocks.")
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        form = QFormLayout()
        form.setSpacing(10)
        self.catalog = ModelCatalog(builtin_installed=bool(builtin_model()))
        self.model_picker = self.catalog.picker  # "another model": a hub id, a folder or a .gguf file
        self.model_edit = self.model_picker.edit
        self.model_error = self.model_picker.problem_label
        form.addRow("Model", self.catalog)
        self.swarm_name_edit = QLineEdit()
        self.swarm_name_edit.setPlaceholderText("Friday night LLM")
        self.swarm_name_edit.setMaxLength(64)
        form.addRow("Swarm name", self.swarm_name_edit)
        self.pc_name_edit = QLineEdit(default_pc_name)
        self.pc_name_edit.setMaxLength(64)
        form.addRow("This PC's name", self.pc_name_edit)
        layout.addLayout(form)
        layout.addWidget(label("How friends will reach this PC", "muted"))
        self.tailscale = TailscalePanel(tailscale_probe)
        layout.addWidget(self.tailscale)
        layout.addStretch(1)
        self.catalog.changed.connect(self.completeChanged.emit)

    def initializePage(self) -> None:
        if self.tailscale.report is None:
            self.tailscale.check()

    def isComplete(self) -> bool:
        return not self.catalog.problem()

    def nextId(self) -> int:
        return PAGE_READY


class JoinPage(QWizardPage):
    def __init__(self, decoder: InviteDecoder | None, default_pc_name: str, secrets_where: str,
                 tailscale_probe: Probe) -> None:
        super().__init__()
        self.setTitle(page_title("Join a swarm"))
        self.setSubTitle("Paste the invite code your friend sent you.")
        layout = QVBoxLayout(self)
        self.form = JoinForm(decoder, default_pc_name=default_pc_name, secrets_where=secrets_where,
                             tailscale_probe=tailscale_probe)
        layout.addWidget(self.form)
        layout.addStretch(1)
        self.code_edit, self.feedback, self.pc_name_edit = self.form.code_edit, self.form.feedback, self.form.pc_name_edit
        self.form.changed.connect(self.completeChanged.emit)

    @property
    def invite(self):
        return self.form.invite

    def code(self) -> str:
        return self.form.code()

    def isComplete(self) -> bool:
        return self.form.is_complete()

    def nextId(self) -> int:
        return PAGE_READY


class ReadyPage(QWizardPage):
    """Applies the choices (starts the node) and shows what the node decided, or why it could not start."""
    def __init__(self, node: NodeProcess, apply: Callable[[], None]) -> None:
        super().__init__()
        self._node = node
        self._apply = apply
        layout = QVBoxLayout(self)
        layout.setSpacing(12)
        self.state_label = label("", "", wrap=True)
        font = self.state_label.font()
        font.setWeight(font.Weight.DemiBold)
        self.state_label.setFont(font)
        layout.addWidget(self.state_label)
        self.back_button = QPushButton("Back: correct it")
        self.back_button.clicked.connect(lambda: self.wizard().back())
        self.back_button.setVisible(False)
        layout.addWidget(self.back_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.load_progress = LoadProgress(node)  # downloading and loading the model, in bytes and blocks
        layout.addWidget(self.load_progress)
        self.sizing_frame, card = card_frame()
        card.addWidget(label("Why this many blocks", "title"))
        self.sizing_label = label("Working out how many blocks this PC can host…", "", wrap=True)
        self.sizing_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        card.addWidget(self.sizing_label)
        layout.addWidget(self.sizing_frame)
        layout.addWidget(label("You can limit the memory Potluck uses at any time in Settings.", "muted", wrap=True))
        layout.addStretch(1)
        self._show_words(NodeState.STARTING)
        node.sizing_received.connect(self._show_sizing)
        node.state_changed.connect(self._show_state)
        node.stats_received.connect(lambda _stats: self._show_state(self._node.state))

    def initializePage(self) -> None:
        self.sizing_label.setText("Working out how many blocks this PC can host…")
        self._show_words(NodeState.STARTING)
        self._apply()
        self._show_state(self._node.state)

    def _show_sizing(self, sizing: Sizing) -> None:
        self.sizing_label.setText(sizing.explanation)

    def _show_words(self, state: NodeState) -> None:
        title, subtitle = READY_WORDS.get(state, STARTING_WORDS)
        self.setTitle(page_title(title))
        self.setSubTitle(subtitle)
        failed = state is NodeState.FAILED
        self.back_button.setVisible(failed)
        self.sizing_frame.setVisible(not failed)  # no blocks to explain
        set_role(self.state_label, "error" if failed else "")

    def _show_state(self, state: NodeState) -> None:
        text = status_line(state, self._node.last_stats, self._node.detail)
        if state is NodeState.FAILED:
            text = sentence(self._node.detail or "The node stopped because of an error")
        self.state_label.setText(text)
        self._show_words(state)


class FirstRunWizard(QWizard):
    def __init__(
        self,
        node: NodeProcess,
        on_finish: Callable[[AppConfig, str | None], None],
        invite_decoder: InviteDecoder | None,
        default_pc_name: str | None = None,
        parent: QWidget | None = None,
        *,
        secrets_where: str = "",
        tailscale_probe: Probe = tailscale_state,
        start_page: int = PAGE_WELCOME,
    ) -> None:
        """on_finish(config, invite_code) starts the node with these choices (invite_code is None for create)."""
        super().__init__(parent)
        self._on_finish = on_finish
        pc_name = (default_pc_name if default_pc_name is not None else socket.gethostname())[:64]
        self.setWindowTitle("Set up Potluck")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setTitleFormat(Qt.TextFormat.RichText)
        self.setSubTitleFormat(Qt.TextFormat.RichText)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage)
        self.welcome = WelcomePage()
        self.create_page = CreatePage(pc_name, tailscale_probe)
        self.join_page = JoinPage(invite_decoder, pc_name, secrets_where, tailscale_probe)
        self.ready_page = ReadyPage(node, self._apply)
        for page_id, page in ((PAGE_WELCOME, self.welcome), (PAGE_CREATE, self.create_page),
                              (PAGE_JOIN, self.join_page), (PAGE_READY, self.ready_page)):
            self.setPage(page_id, page)
        if start_page == PAGE_CREATE:
            self.welcome.create_button.setChecked(True)
        self.setStartId(start_page)
        self.resize(760, 700)

    def set_logo(self, icon) -> None:
        self.setPixmap(QWizard.WizardPixmap.LogoPixmap, icon.pixmap(56, 56))

    def chosen_config(self) -> tuple[AppConfig, str | None]:
        if self.welcome.create_button.isChecked():
            page = self.create_page
            config = AppConfig(mode=SwarmMode.CREATE, model=page.catalog.model(), quant=page.catalog.quant(),
                               swarm_name=page.swarm_name_edit.text().strip(), pc_name=page.pc_name_edit.text().strip())
            return config, None
        form = self.join_page.form
        invite = form.invite
        config = AppConfig(mode=SwarmMode.JOIN, model=form.own_model() or str(getattr(invite, "model_id", "")),
                           swarm_name=str(getattr(invite, "swarm_name", "")),
                           swarm_id=str(getattr(invite, "swarm_id", "")), pc_name=form.pc_name_edit.text().strip())
        return config, form.code()

    def _apply(self) -> None:
        config, code = self.chosen_config()
        self._on_finish(config, code)
