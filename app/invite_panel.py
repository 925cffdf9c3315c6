"""InvitePanel: make an invite code and show it: large, with a Copy button, how long it works and for how many
joins, where it reaches this PC, and a QR code for a phone (with the `segno` package). Below, the codes made on
this PC, each with Cancel.

Before any code is made, the Tailscale panel says whether friends can reach this PC. Without Tailscale the node
listens on 127.0.0.1 only and refuses to make a code that no friend could use, unless "This PC only" is ticked
(a second Potluck on this PC, for trying it out).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QClipboard, QFont, QPixmap, QTextOption
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from potluck.app.formatting import format_duration
from potluck.app.stat_card import card_frame, label, set_role
from potluck.app.swarm_client import SwarmClient
from potluck.app.tailscale_help import Probe, TailscalePanel
from potluck.core import protocol

EXPIRY_CHOICES = (("1 hour", 3600), ("1 day", 86_400), ("7 days", 7 * 86_400), ("30 days", 30 * 86_400))
DEFAULT_EXPIRY_INDEX = 2
QR_SCALE = 3


def qr_png(text: str) -> bytes | None:
    """A PNG of `text` as a QR code, or None when the `segno` package is not installed."""
    try:
        import segno  # optional, pure Python (about 80 KB)
    except ImportError:
        return None
    import io

    buffer = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buffer, kind="png", scale=QR_SCALE, border=2)
    return buffer.getvalue()


def uses_words(max_uses: int) -> str:
    return "any number of joins until it expires" if max_uses == 0 else \
        "one join" if max_uses == 1 else f"{max_uses} joins"


def invite_details(made: protocol.InviteMade, now: float) -> str:
    left = format_duration(made.expires_at - now)
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(made.expires_at))
    where = "this PC only (127.0.0.1)" if made.this_pc_only else \
        ", ".join(sorted({m.split("/")[2] for m in made.bootstrap}))
    return (f"For “{made.swarm_name}”. Works until {until} (in {left}), for {uses_words(made.max_uses)}. "
            f"Reaches this PC at {where}.")


def invite_state(info: protocol.InviteInfo, now: float) -> str:
    """A code made here, in words: 'works for 6 d 23 h · 1 join left', 'used', 'expired', 'cancelled'."""
    if info.cancelled:
        return "cancelled"
    if now >= info.expires_at:
        return "expired"
    if info.max_uses and info.uses_left <= 0:
        return "used"
    left = "any number of joins" if info.max_uses == 0 else \
        f"{info.uses_left} join{'s' if info.uses_left != 1 else ''} left"
    return f"works for {format_duration(info.expires_at - now)} · {left}"


class InvitePanel(QWidget):
    def __init__(self, client: SwarmClient, clipboard: QClipboard, tailscale_probe: Probe,
                 clock: Callable[[], float] = time.time, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._clipboard = clipboard
        self._clock = clock
        self._request: str | None = None
        self._cancels: dict[str, str] = {}  # request id -> invite id being cancelled
        self.made: protocol.InviteMade | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        self.tailscale = TailscalePanel(tailscale_probe)
        layout.addWidget(self.tailscale)
        layout.addLayout(self._build_choices())
        self.error_label = label("", "error", wrap=True)
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)
        layout.addWidget(self._build_code_card())
        self.codes_title = label("Codes made on this PC", "muted")
        layout.addWidget(self.codes_title)
        self.codes = QGridLayout()
        self.codes.setHorizontalSpacing(12)
        layout.addLayout(self.codes)
        client.invite_made.connect(self._on_made)
        client.result.connect(self._on_result)
        client.view_changed.connect(self.show_invites)

    def _build_choices(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(label("Works for"))
        self.expiry = QComboBox()
        for text, seconds in EXPIRY_CHOICES:
            self.expiry.addItem(text, seconds)
        self.expiry.setCurrentIndex(DEFAULT_EXPIRY_INDEX)
        row.addWidget(self.expiry)
        row.addWidget(label("Joins"))
        self.uses = QSpinBox()
        self.uses.setRange(0, 99)
        self.uses.setValue(1)
        self.uses.setSpecialValueText("until it expires")
        row.addWidget(self.uses)
        self.this_pc_only = QCheckBox("This PC only")
        self.this_pc_only.setToolTip("A code that names 127.0.0.1: it works only for a second Potluck on this PC "
                                     "(to try it out). Friends need Tailscale.")
        row.addWidget(self.this_pc_only)
        row.addStretch(1)
        self.create_button = QPushButton("Create invite code")
        self.create_button.setObjectName("primary")
        self.create_button.clicked.connect(self.create)
        row.addWidget(self.create_button)
        return row

    def _build_code_card(self) -> QWidget:
        self.code_card, card = card_frame()
        card.addWidget(label("Send this code to your friend over a chat you trust: it works like a password until "
                             "it is used.", "muted", wrap=True))
        row = QHBoxLayout()
        self.code_view = QPlainTextEdit()
        self.code_view.setReadOnly(True)
        self.code_view.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        font.setPointSize(12)
        self.code_view.setFont(font)
        self.code_view.setFixedHeight(216)  # codes naming a long model path run to about 450 characters
        row.addWidget(self.code_view, 1)
        self.qr_label = QLabel()
        self.qr_label.setToolTip("Scan with a phone to send the code from there")
        row.addWidget(self.qr_label)
        card.addLayout(row)
        buttons = QHBoxLayout()
        self.details = label("", "", wrap=True)
        buttons.addWidget(self.details, 1)
        self.copy_button = QPushButton("Copy code")
        self.copy_button.setObjectName("primary")
        self.copy_button.clicked.connect(self.copy)
        buttons.addWidget(self.copy_button)
        card.addLayout(buttons)
        self.copied_label = label("", "ok")
        card.addWidget(self.copied_label)
        self.code_card.setVisible(False)
        return self.code_card

    # ------------------------------------------------------------------ actions

    def create(self) -> None:
        self._show_error("")
        self.create_button.setEnabled(False)
        self.create_button.setText("Creating…")
        self._request = self._client.create_invite(int(self.expiry.currentData()), self.uses.value(),
                                                   self.this_pc_only.isChecked())

    def copy(self) -> None:
        if self.made is not None:
            self._clipboard.setText(self.made.code)
            self.copied_label.setText("Copied. Paste it to your friend in a private chat.")

    def _on_made(self, made: protocol.InviteMade) -> None:
        if made.request_id != self._request:
            return
        self._done()
        self.made = made
        self.code_view.setPlainText(made.code)
        self.details.setText(invite_details(made, self._clock()))
        png = qr_png(made.code)
        pixmap = QPixmap()
        if png is not None and pixmap.loadFromData(png, "PNG"):
            self.qr_label.setPixmap(pixmap)
        self.qr_label.setVisible(png is not None)
        self.copied_label.setText("")
        self.code_card.setVisible(True)

    def _on_result(self, result: protocol.SwarmResult) -> None:
        if result.request_id == self._request and not result.ok:
            self._done()
            hint = " To try Potluck with a second copy on this PC, tick “This PC only”." \
                if "127.0.0.1" in result.message and not self.this_pc_only.isChecked() else ""
            self._show_error(result.message + hint)
        elif result.request_id in self._cancels:
            self._cancels.pop(result.request_id)
            if not result.ok:
                self._show_error(result.message)

    def _done(self) -> None:
        self._request = None
        self.create_button.setEnabled(True)
        self.create_button.setText("Create invite code")

    def _show_error(self, text: str) -> None:
        self.error_label.setText(text)
        set_role(self.error_label, "error")
        self.error_label.setVisible(bool(text))

    # ------------------------------------------------------------------ codes made here

    def show_invites(self, view: protocol.SwarmView) -> None:
        while self.codes.count():
            item = self.codes.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        now = self._clock()
        shown: Sequence[protocol.InviteInfo] = sorted(view.invites, key=lambda i: -i.expires_at)[:8]
        self.codes_title.setVisible(bool(shown))
        for row, info in enumerate(shown):
            state = invite_state(info, now)
            self.codes.addWidget(label(info.invite_id, "muted"), row, 0)
            self.codes.addWidget(label(state), row, 1)
            if state.startswith("works"):
                cancel = QPushButton("Cancel")
                cancel.setObjectName(f"cancel-{info.invite_id}")
                cancel.clicked.connect(lambda _checked=False, i=info.invite_id: self._cancel(i))
                self.codes.addWidget(cancel, row, 2, Qt.AlignmentFlag.AlignRight)

    def _cancel(self, invite_id: str) -> None:
        self._cancels[self._client.cancel_invite(invite_id)] = invite_id
