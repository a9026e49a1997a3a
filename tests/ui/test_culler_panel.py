"""The culler panel refuses intervals and timeouts outside their ranges and says why; the
list of message types that are not activity is edited as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kernelmon.core import Settings
from kernelmon.ui.culler_panel import CullerPanel

from .conftest import edit_field


@pytest.fixture
def panel(qtbot: Any, tmp_path: Path) -> tuple[CullerPanel, list[Settings]]:
    widget = CullerPanel(Settings(root_dir=str(tmp_path)))
    qtbot.addWidget(widget)
    emitted: list[Settings] = []
    widget.settings_changed.connect(emitted.append)
    return widget, emitted


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("cull_interval", "1e12"),  # overflowed the culler's timer
        ("cull_interval", "1e-9"),  # ~80,000 passes a second
        ("cull_interval", "0"),
        ("kernel_info_timeout", "1e12"),
        ("cull_idle_timeout", "1e300"),
        ("buffer_max_messages", "1" + "0" * 20),
    ],
)
def test_out_of_range_values_refused_with_the_range(panel, name, text):
    widget, emitted = panel
    before = widget.edits[name].text()
    edit_field(widget, name, text)
    assert emitted == []
    assert widget.error_label.isVisibleTo(widget)
    assert "at most" in widget.error_label.text() or " to " in widget.error_label.text()
    assert widget.edits[name].text() == before


def test_interval_tooltip_and_bounds(panel):
    widget, emitted = panel
    tip = widget.edits["cull_interval"].toolTip()
    assert "0.1 s" in tip
    assert "604800 s" in tip
    edit_field(widget, "cull_interval", "0.1")
    edit_field(widget, "cull_interval", "604800")
    assert [s.cull_interval for s in emitted] == [0.1, 604800]
    assert not widget.error_label.isVisibleTo(widget)


def test_untracked_message_types_edited_as_text(panel):
    from kernelmon.core.settings import UNTRACKED_MESSAGE_TYPES

    widget, emitted = panel
    field = widget.edits["untracked_message_types"]
    assert field.text() == ", ".join(UNTRACKED_MESSAGE_TYPES)
    edit_field(widget, "untracked_message_types", "kernel_info_request, usage_request status")
    assert emitted[-1].untracked_message_types == (
        "kernel_info_request",
        "usage_request",
        "status",
    )
    edit_field(widget, "untracked_message_types", "kernel_info_request, no/such")
    assert len(emitted) == 1
    assert "message type" in widget.error_label.text()
