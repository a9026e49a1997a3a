"""Resource files: found from the source tree (or the installed package), all loadable."""

from __future__ import annotations

import configparser

import pytest
from PySide6.QtGui import QImageReader

from kernelmon.ui import icons


def test_resources_are_found() -> None:
    folder = icons.resources_dir()
    assert (folder / "kernelmon.svg").is_file()
    assert (folder / "kernelmon.desktop").is_file()


@pytest.mark.parametrize(
    "name",
    [f"state-{s}" for s in icons.STATE_ICONS]
    + [f"origin-{o}" for o in icons.ORIGIN_ICONS]
    + ["tray-idle", "tray-busy", "tray-dead"]
    + [
        "action-start",
        "action-restart",
        "action-interrupt",
        "action-shutdown",
        "action-shutdown-all",
        "action-console",
        "action-cleanup",
        "action-details",
    ],
)
def test_every_icon_renders(qapp: object, name: str) -> None:
    path = icons.resource_path(f"icons/{name}.svg")
    assert path.is_file(), path
    image = QImageReader(str(path)).read()
    assert not image.isNull(), f"{path} does not render"
    assert not icons.icon(name).pixmap(16, 16).isNull()


def test_app_icon_and_spec_logo(qapp: object, tmp_path: object) -> None:
    assert not icons.app_icon().pixmap(64, 64).isNull()
    assert icons.spec_logo("") is None


def test_desktop_file() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(icons.resource_path("kernelmon.desktop"))
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Exec"] == "kernelmon"
    assert entry["Icon"] == "kernelmon"
