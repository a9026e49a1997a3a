"""What happened to the kernels, newest first, for people (the log file has the details).

Kernels are named as everywhere in the window (``figures.kernel_label``). Other applications'
kernels are followed too: one that becomes an orphan, loses its process (stale), or
disappears (its connection file removed) gets a line. A long line is elided in the middle;
its tooltip has all of it.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem, QWidget

from .bridge import KernelBridge
from .figures import kernel_label, origin_of, owner_text

LEVEL_COLOURS = {"error": QColor("#c62828"), "warning": QColor("#b35900")}


class EventLogView(QTreeWidget):
    """A list of events (time, kernel, what happened), newest on top, at most ``limit``."""

    def __init__(self, parent: QWidget | None = None, limit: int = 1000) -> None:
        super().__init__(parent)
        self.limit = limit
        #: How each kernel is named, and who owns it, as last seen (kept after it left).
        self._names: dict[str, str] = {}
        self._origins: dict[str, str] = {}
        self._owners: dict[str, str] = {}
        self.setColumnCount(3)
        self.setHeaderLabels(["Time", "Kernel", "Event"])
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setObjectName("event_log")
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setColumnWidth(0, 75)
        self.setColumnWidth(1, 230)

    def attach(self, bridge: KernelBridge) -> None:
        bridge.kernel_added.connect(self.on_bridge_kernel_added)
        bridge.kernel_started.connect(lambda k: self.add(k, "started"))
        bridge.kernel_adopted.connect(
            lambda k, answered: self.add(
                k,
                "taken over from an earlier kernelmon run"
                if answered
                else "taken over from an earlier run, but it does not answer",
                "info" if answered else "warning",
            )
        )
        bridge.kernel_restarted.connect(
            lambda k, auto: self.add(k, "restarted automatically" if auto else "restarted")
        )
        bridge.kernel_interrupted.connect(lambda k: self.add(k, "interrupted"))
        bridge.kernel_died.connect(self.on_bridge_kernel_died)
        bridge.kernel_culled.connect(lambda k, r: self.add(k, f"culled: {r}", "warning"))
        bridge.kernel_shut_down.connect(self.on_bridge_kernel_shut_down)
        bridge.kernel_changed.connect(self.on_bridge_kernel_changed)
        bridge.kernel_removed.connect(self.on_bridge_kernel_removed)
        bridge.action_failed.connect(
            lambda k, action, msg: self.add(k, f"{action} failed: {msg}", "error")
        )
        bridge.output_lost.connect(lambda k, _n, text: self.add(k, text, "warning"))

    def _remember(self, kernel_id: str, model: dict[str, Any]) -> None:
        self._names[kernel_id] = kernel_label(kernel_id, model)
        self._origins[kernel_id] = origin_of(model)
        if origin_of(model) == "external":
            self._owners[kernel_id] = owner_text(model)

    def on_bridge_kernel_added(self, kernel_id: str, model: dict[str, Any]) -> None:
        self._remember(kernel_id, model)
        origin = origin_of(model)
        if origin == "stale":
            self.add(kernel_id, f"found a stale connection file: {model.get('connection_file')}")
        elif origin == "server":
            where = model.get("server_name") or model.get("server_url") or "a Jupyter server"
            self.add(kernel_id, f"found on {where}")
        elif origin != "owned":
            self.add(kernel_id, f"found ({origin}), started by {owner_text(model)}")
        else:
            spec = model.get("display_name") or model.get("name")
            self.add(kernel_id, f"starting ({spec}) in {model.get('cwd')}")

    def on_bridge_kernel_changed(self, kernel_id: str, model: dict[str, Any], fields: Any) -> None:
        """A change of who owns another application's kernel is news; so is a new name."""
        if fields is not None and not {"origin", "notebook_path", "cwd", "parent_app"} & set(
            fields
        ):
            return
        before = self._origins.get(kernel_id)
        owner = self._owners.get(kernel_id, "another application")
        self._remember(kernel_id, model)
        origin = origin_of(model)
        if before is None or before == origin or "owned" in (before, origin):
            return
        if origin == "orphan":
            self.add(kernel_id, f"became an orphan: {owner}, which started it, is gone")
        elif origin == "stale":
            file = model.get("connection_file")
            self.add(kernel_id, f"its process is gone; only its connection file is left: {file}")
        else:
            self.add(kernel_id, f"found running again ({origin}), started by {owner_text(model)}")

    def on_bridge_kernel_shut_down(self, kernel_id: str) -> None:
        stale = self._origins.get(kernel_id) == "stale"
        self.add(kernel_id, "connection file removed" if stale else "shut down")

    def on_bridge_kernel_died(self, kernel_id: str, reason: str, will_restart: bool) -> None:
        then = "; restarting it" if will_restart else ""
        self.add(kernel_id, f"died: {reason or 'no reason given'}{then}", "error")

    def on_bridge_kernel_removed(self, kernel_id: str, reason: str) -> None:
        if reason.startswith("failed to start"):
            self.add(kernel_id, reason, "error")
        elif reason != "shut down" and self._origins.get(kernel_id, "owned") != "owned":
            self.add(kernel_id, f"disappeared: {reason}" if reason else "disappeared")
        self._origins.pop(kernel_id, None)
        self._owners.pop(kernel_id, None)

    def add(self, kernel_id: str | None, text: str, level: str = "info") -> None:
        """Add an event on top (``kernel_id`` None for events of the app itself)."""
        who = ""
        if kernel_id:
            who = self._names.get(kernel_id) or kernel_label(kernel_id, None)
        line = " ".join(text.split())  # one line a row; the tooltip keeps the line breaks
        item = QTreeWidgetItem([time.strftime("%H:%M:%S"), who, line])
        item.setToolTip(2, text)
        if kernel_id:
            item.setToolTip(1, f"{who}\nKernel id {kernel_id}")
        colour = LEVEL_COLOURS.get(level)
        if colour is not None:
            item.setForeground(2, colour)
        self.insertTopLevelItem(0, item)
        while self.topLevelItemCount() > self.limit:
            self.takeTopLevelItem(self.topLevelItemCount() - 1)

    def texts(self) -> list[str]:
        """The events' texts, newest first."""
        items = (self.topLevelItem(i) for i in range(self.topLevelItemCount()))
        return [item.text(2) for item in items if item is not None]
