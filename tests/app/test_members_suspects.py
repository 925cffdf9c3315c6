"""The member table marks a member this PC's spot checks caught computing wrong, and the reply settings carry
guessing ahead (on by default) and private chats."""

from potluck.app.members_table import SUSPECT_MARK, SUSPECT_TIP, MembersTable
from potluck.app.sampling_panel import SamplingPanel, SamplingSettings
from potluck.core.protocol import Member


def test_a_suspect_member_is_marked_with_a_reason(qtbot):
    table = MembersTable(clock=lambda: 1000.0)
    qtbot.addWidget(table)
    table.set_members([Member("me", "Mine", "online", 0, 2, True, 1000.0),
                       Member("bad", "Bob's PC", "online", 2, 4, True, 1000.0, suspect=True),
                       Member("ok", "Ana's PC", "online", 2, 4, True, 1000.0)], "me")
    states = {row[0]: row[1] for row in table.row_texts()}
    assert states["Bob's PC"].endswith(SUSPECT_MARK) and not states["Ana's PC"].endswith(SUSPECT_MARK)
    bob = next(r for r in range(table.table.rowCount()) if table.table.item(r, 0).text() == "Bob's PC")
    assert table.table.item(bob, 1).toolTip() == SUSPECT_TIP


def test_reply_settings_guess_ahead_by_default_and_remember_private(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    settings = QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat)
    panel = SamplingPanel(settings)
    qtbot.addWidget(panel)
    assert panel.values().guess_ahead is True and panel.values().private is False
    panel.private.setChecked(True)
    panel.guess_ahead.setChecked(False)
    panel.save()
    again = SamplingPanel(settings)
    qtbot.addWidget(again)
    assert (again.values().guess_ahead, again.values().private) == (False, True)
    assert SamplingSettings.from_json({"private": "yes", "guess_ahead": 1}) == SamplingSettings()
