"""One app per user and config folder; icons from resources/ or painted when the files are missing."""

from __future__ import annotations

import pytest

from potluck.app.icons import IconSet, IconState, icon_files, icon_state_for
from potluck.app.paths import resources_dir
from potluck.app.single_instance import SingleInstance, instance_key
from potluck.core.protocol import NodeState


def test_a_second_instance_asks_the_first_to_show_itself(qtbot, tmp_path):
    key = instance_key(tmp_path)
    first = SingleInstance(key, tmp_path)
    assert first.claim()
    second = SingleInstance(key, tmp_path)
    with qtbot.waitSignal(first.show_requested, timeout=10_000):
        assert second.claim() is False
    first.release()
    third = SingleInstance(key, tmp_path)
    assert third.claim()  # the first one is gone: the next launch is the app
    third.release()


def test_instance_keys_differ_per_config_folder(tmp_path):
    assert instance_key(tmp_path / "a") != instance_key(tmp_path / "b")
    assert instance_key(tmp_path / "a") == instance_key(tmp_path / "a")


@pytest.mark.parametrize("state", list(NodeState))
def test_every_state_has_an_icon_even_without_files(qapp, tmp_path, state):
    icons = IconSet(tmp_path / "no-icons-here")
    icon = icons.for_node_state(state)
    assert not icon.isNull() and icon.pixmap(22, 22).width() == 22
    assert f"potluck-{icon_state_for(state).value}" in icons.painted
    assert not icons.app_icon().isNull()


def test_painted_icons_differ_per_state(qapp, tmp_path):
    icons = IconSet(tmp_path)
    images = {s: icons.state_icon(s).pixmap(32, 32).toImage() for s in IconState}
    assert len({bytes(img.constBits()) for img in images.values()}) == len(IconState)


def test_drawn_icon_files_are_used_when_present(qapp, tmp_path):
    from PySide6.QtGui import QColor, QPixmap

    for size in (16, 32):
        pixmap = QPixmap(size, size)
        pixmap.fill(QColor("#123456"))
        pixmap.save(str(tmp_path / f"potluck-serving-{size}.png"))
    icons = IconSet(tmp_path)
    expected = {size: tmp_path / f"potluck-serving-{size}.png" for size in (16, 32)}
    assert icon_files(tmp_path, "potluck-serving") == expected
    image = icons.state_icon(IconState.SERVING).pixmap(32, 32).toImage()
    assert image.pixelColor(5, 5).name() == "#123456"
    assert "potluck-serving" not in icons.painted
    icons.state_icon(IconState.PAUSED)
    assert "potluck-paused" in icons.painted  # no file for it: painted


def test_the_project_ships_icons_for_every_state():
    folder = resources_dir() / "icons"
    if not folder.is_dir():
        pytest.skip("resources/icons is not in this checkout yet")
    for stem in ["potluck"] + [f"potluck-{s.value}" for s in IconState]:
        assert icon_files(folder, stem), f"no {stem}-<size>.png in {folder}"
