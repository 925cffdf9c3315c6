"""Tailscale guidance: what is missing for friends to reach this PC (or for this PC to reach a friend's code), and how
to fix it, with links to Tailscale's own pages. Shown by the wizard before any code is made, and on the swarm page.

`TailscalePanel` asks `probe` (core/swarm/tailscale.tailscale_state: a few seconds of `tailscale` commands) off the
GUI thread and shows the answer; `code_reach_problem` (pure, table-tested) says whether a pasted code's addresses
can work from here.
"""

from __future__ import annotations

import html
import ipaddress
import re
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from potluck.app.background import run_in_background
from potluck.app.stat_card import label, set_role
from potluck.core.swarm import tailscale
from potluck.core.swarm.tailscale import Sharing, TailscaleReport, TailscaleState

Probe = Callable[[], TailscaleReport]
LINKS = (("Download Tailscale", tailscale.DOWNLOAD_URL), ("Install guide", tailscale.INSTALL_GUIDE_URL),
         ("Sign in", tailscale.LOGIN_URL))
CHECKING = "Checking Tailscale on this PC…"
LOOPBACK_CODE = ("This code names only 127.0.0.1: it was made for trying Potluck on one PC, so it works only on the PC "
                 "that made it.")


def headline(report: TailscaleReport) -> str:
    if report.ready:
        name = f" ({report.hostname})" if report.hostname else ""
        return f"Tailscale is ready: friends in your tailnet reach this PC at {report.ipv4}{name}."
    return "Friends cannot reach this PC yet: Tailscale is not ready here."


def advice_html(text: str) -> str:
    """Advice text with its web addresses turned into links."""
    escaped = html.escape(text)
    return re.sub(r"https://[^\s,;)]+[^\s,;).]", lambda m: f"<a href='{m.group(0)}'>{m.group(0)}</a>", escaped)


def _peer_ips(bootstrap: tuple[str, ...]) -> list[str]:
    return [m.split("/")[2] for m in bootstrap if m.count("/") >= 3]


def code_reach_problem(bootstrap: tuple[str, ...], report: TailscaleReport | None) -> str:
    """Why a code with these addresses may not work from this PC ('' when nothing is known to be wrong)."""
    ips = _peer_ips(bootstrap)
    if ips and all(ipaddress.ip_address(ip).is_loopback for ip in ips):
        return LOOPBACK_CODE
    tailnet = [ip for ip in ips if tailscale.is_tailnet_ipv4(ip)]
    if not tailnet or report is None:
        return ""
    if not report.ready:
        return "This code reaches your friend over Tailscale, which is not ready on this PC. " + \
            tailscale.tailscale_advice(report)
    sharing = [report.sharing_with(ip) for ip in tailnet]
    if report.status is None or Sharing.SAME_TAILNET in sharing:  # no peer list: nothing known to be wrong
        return ""
    if Sharing.SHARED_IN in sharing:
        return ("Your friend's PC came into your tailnet by node sharing: it can answer this PC but cannot connect back "
                "to it, and joining needs both. Ask your friend to invite your account to their tailnet as a user "
                "(or to share their PC with you and yours with them), then try again.")
    if Sharing.SHAREE in sharing:
        return ("This PC is shared with your friend's tailnet, but your friend's PC is not shared with you: this PC "
                "cannot connect to it. Ask your friend to share their PC with your account too.")
    return (f"Tailscale on this PC does not know the address {tailnet[0]}: sign in to the same tailnet as your friend "
            f"(your friend can invite you from {tailscale.LOGIN_URL}), then check again.")


class TailscalePanel(QFrame):
    """Tailscale's state here, what is missing and how to fix it, and a Check again button."""

    checked = Signal(object)  # TailscaleReport

    def __init__(self, probe: Probe, run_async=run_in_background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self._probe = probe
        self._run_async = run_async
        self.report: TailscaleReport | None = None
        self.checking = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(4)
        self.headline = label(CHECKING, "", wrap=True)
        font = self.headline.font()
        font.setWeight(font.Weight.DemiBold)
        self.headline.setFont(font)
        layout.addWidget(self.headline)
        self.advice = label("", "muted", wrap=True)
        self.advice.setTextFormat(Qt.TextFormat.RichText)
        self.advice.setOpenExternalLinks(True)
        self.advice.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        layout.addWidget(self.advice)
        row = QHBoxLayout()
        self.links = label(" · ".join(f"<a href='{url}'>{text}</a>" for text, url in LINKS), "muted")
        self.links.setTextFormat(Qt.TextFormat.RichText)
        self.links.setOpenExternalLinks(True)
        row.addWidget(self.links)
        row.addStretch(1)
        self.check_button = QPushButton("Check again")
        self.check_button.clicked.connect(self.check)
        row.addWidget(self.check_button)
        layout.addLayout(row)

    def check(self) -> None:
        if self.checking:
            return
        self.checking = True
        self.check_button.setEnabled(False)
        self.headline.setText(CHECKING)
        self._run_async(self._probe, self.show_report, self._failed)

    def show_report(self, report: TailscaleReport) -> None:
        self.checking = False
        self.check_button.setEnabled(True)
        self.report = report
        self.headline.setText(headline(report))
        set_role(self.headline, "ok" if report.ready else "error")
        words = tailscale.tailscale_advice(report)
        self.advice.setText(advice_html(words))
        self.advice.setVisible(bool(words))
        self.links.setVisible(not report.ready)
        self.checked.emit(report)

    def _failed(self, error: Exception) -> None:
        self.show_report(TailscaleReport(TailscaleState.NOT_INSTALLED))
        self.advice.setText(advice_html(f"Could not ask Tailscale ({error}). " + tailscale.tailscale_advice(self.report)))
