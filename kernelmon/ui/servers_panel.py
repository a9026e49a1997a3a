"""The servers panel (a dock in the main window): the Jupyter Servers and Enterprise Gateways
kernelmon knows, each with its status in words, and Add…, Remove, Test; per server, whether
kernelmon's culler may act on its kernels.

It reads ``KernelMap.list_servers()`` (a list of small dicts) once a second (the culler
panel's note needs it too while the panel is hidden) and rebuilds its rows only when
something changed; ``servers_changed`` passes the list
on (the culler panel shows per server who culls its kernels).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core import KernelMap
from ..core.records import parse_isoformat
from ..core.servers import keyring_problem
from . import dialogs
from .console import Spawn
from .server_dialog import KIND_NAMES, AddServerDialog, ServerInput
from .usage_meter import UsageMeter

if TYPE_CHECKING:
    from .culler_panel import CullerPanel
    from .details_pane import KernelDetailsPane
    from .settings_controller import SettingsController

logger = logging.getLogger(__name__)

COLUMNS = ("Name", "URL", "Kind", "Status", "Kernels", "kernelmon culls")
#: How often the list is read [ms].
REFRESH_MS = 1000
STATUS_WORDS = {
    "reachable": "reachable",
    "auth_refused": "token refused",
    "listing_forbidden": "listing forbidden",
    "tls_problem": "TLS problem",
    "unreachable": "unreachable",
    "timeout": "not answering",
    "bad_answer": "bad answers",
    "refused": "refused a request",
    "not_found": "reachable",
    "closed": "closed",
}


def status_cell(server: dict[str, Any]) -> str:
    """The status in words and since when (local time): "unreachable since 10:42"."""
    words = STATUS_WORDS.get(str(server.get("status")), str(server.get("status")))
    since = parse_isoformat(server.get("status_since"))
    return f"{words} since {since.astimezone().strftime('%H:%M')}" if since else words


def kind_text(kind: object) -> str:
    names = {str(k): v for k, v in KIND_NAMES.items()}
    return names.get(str(kind), str(kind)) if kind else "kind not known yet"


def server_culls_text(server: dict[str, Any]) -> str:
    """Whether the server culls its idle kernels by itself, in words."""
    culls = server.get("server_culls")
    settings = server.get("cull_settings")
    if culls is True:
        detail = f" ({settings})" if settings else ""
        return f"The server culls its idle kernels by itself{detail}."
    if culls is False:
        return "The server does not cull its idle kernels."
    return (
        "Whether the server culls idle kernels by itself is not known (its REST API does not "
        "say; JupyterLab's default is not to)."
    )


def kernelmon_culls_text(server: dict[str, Any]) -> str:
    if server.get("kernelmon_culling"):
        return "kernelmon's culler acts on its idle kernels (with your settings)."
    return "kernelmon's culler leaves its kernels alone."


def detail_text(server: dict[str, Any]) -> str:
    """Everything the panel says of one server, in sentences."""
    where = "found running on this computer" if server.get("local") else "added by you"
    lines = [
        f"{server.get('name') or server.get('url')}: {kind_text(server.get('kind'))} at "
        f"{server.get('url')}, {where}.",
        str(server.get("status_text") or STATUS_WORDS.get(str(server.get("status")), "")),
    ]
    error = server.get("error")
    if error and error not in lines[1]:
        lines.append(str(error))
    if server.get("lists_kernels") is False:
        lines.append("kernelmon sees only the kernels it started there.")
    lines += [server_culls_text(server), kernelmon_culls_text(server)]
    return "\n".join(line for line in lines if line)


class ServersPanel(QWidget):
    """The list of servers and what can be done with them."""

    #: ``(servers)``: the list changed (``KernelMap.list_servers()`` entries).
    servers_changed = Signal(list)

    def __init__(
        self,
        kernel_map: KernelMap,
        spawn: Spawn,
        parent: QWidget | None = None,
        *,
        settings: SettingsController | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("servers_panel")
        self._map = kernel_map
        self._spawn = spawn
        #: the window's settings (the token file allowed is saved with them); None: the map's
        self._settings = settings
        self.usage_meter: UsageMeter | None = None
        self.servers: list[dict[str, Any]] = []
        self.tree = QTreeWidget()
        self.tree.setObjectName("servers")
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setToolTip("Jupyter Servers and Enterprise Gateways whose kernels are listed")
        self.tree.itemSelectionChanged.connect(self.on_tree_item_selection_changed)
        self.details = QLabel("")
        self.details.setObjectName("server_details")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.culling = QCheckBox("Let kernelmon's &culler act on this server's kernels")
        self.culling.setToolTip(
            "Off (the default): kernelmon never shuts down this server's kernels by itself "
            "(the server may have its own culler). On: the culler settings apply to them too, "
            "and a culled kernel is shut down through the server."
        )
        self.culling.toggled.connect(self.on_culling_toggled)
        self.add_button = QPushButton("&Add…")
        self.add_button.setToolTip("Add a Jupyter Server or Enterprise Gateway (Insert)")
        self.add_button.clicked.connect(self.open_add_dialog)
        self.remove_button = QPushButton("&Remove")
        self.remove_button.setToolTip(
            "Forget the selected server (Alt+R); its kernels keep running there"
        )
        self.remove_button.clicked.connect(self.on_remove_button_clicked)
        self.test_button = QPushButton("&Test")
        self.test_button.setToolTip("Ask every server for its kernels now (F5)")
        self.test_button.clicked.connect(self.on_test_button_clicked)
        # not Del for Remove: the window's Del shuts the selected kernels down
        for key, slot in (
            ("Ins", self.open_add_dialog),
            ("F5", self.on_test_button_clicked),
        ):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        self.busy = QLabel("")
        self.busy.setObjectName("servers_busy")
        buttons = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.test_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.details)
        layout.addWidget(self.culling)
        layout.addLayout(buttons)
        layout.addWidget(self.busy)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    # -- the list -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the servers; rebuild the rows if anything changed."""
        try:
            servers = self._map.list_servers()
        except Exception:  # the panel must not stop the window
            logger.exception("Listing the servers failed")
            return
        if servers == self.servers:
            return
        self.servers = servers
        selected = self.selected_id()
        self.tree.clear()
        for server in servers:
            item = QTreeWidgetItem(
                [
                    str(server.get("name") or ""),
                    str(server.get("url") or ""),
                    kind_text(server.get("kind"))
                    + (" (this computer)" if server.get("local") else ""),
                    status_cell(server),
                    str(server.get("kernels", "")),
                    "yes" if server.get("kernelmon_culling") else "no",
                ]
            )
            item.setData(0, Qt.ItemDataRole.UserRole, server.get("id"))
            tip = detail_text(server)
            for column in range(len(COLUMNS)):
                item.setToolTip(column, tip)
            self.tree.addTopLevelItem(item)
            if server.get("id") == selected:
                item.setSelected(True)
        for column in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(column)
        if selected is None and self.tree.topLevelItemCount():
            first = self.tree.topLevelItem(0)
            if first is not None:
                first.setSelected(True)
        self.on_tree_item_selection_changed()
        self.servers_changed.emit(servers)

    def selected_id(self) -> str | None:
        items = self.tree.selectedItems()
        return str(items[0].data(0, Qt.ItemDataRole.UserRole)) if items else None

    def selected(self) -> dict[str, Any] | None:
        sid = self.selected_id()
        return next((s for s in self.servers if s.get("id") == sid), None)

    def on_tree_item_selection_changed(self) -> None:
        server = self.selected()
        self.details.setText(detail_text(server) if server else "No server selected.")
        self.culling.blockSignals(True)
        self.culling.setChecked(bool(server and server.get("kernelmon_culling")))
        self.culling.blockSignals(False)
        self.culling.setEnabled(server is not None)
        local = bool(server and server.get("local"))
        self.remove_button.setEnabled(server is not None and not local)
        if local:
            self.remove_button.setToolTip(
                "A server running on this computer is listed while it runs (found in the "
                "Jupyter runtime folder); it cannot be removed"
            )
        else:
            self.remove_button.setToolTip(
                "Forget the selected server (Alt+R); its kernels keep running there"
            )

    # -- actions --------------------------------------------------------------------------

    def on_culling_toggled(self, on: bool) -> None:
        sid = self.selected_id()
        if sid is None:
            return
        try:
            self._map.set_server_culling(sid, on)
        except (KeyError, ValueError) as error:
            self.busy.setText(f"Not changed: {error}")
        self.refresh()

    def on_remove_button_clicked(self) -> None:
        server = self.selected()
        if server is None or server.get("local"):
            return
        name = server.get("name") or server.get("url")
        ok, _skip = dialogs.confirm(
            self,
            "Remove server",
            f"Forget the server {name} ({server.get('url')})?\n\nIts kernels keep running "
            "there; they leave kernelmon's table, and its token leaves the keyring.",
            ok_text="Remove",
            can_skip=False,
        )
        if ok:
            self._spawn(self._remove(str(server["id"]), str(name)), f"Removing server {name}")

    async def _remove(self, server_id: str, name: str) -> None:
        self.busy.setText(f"Removing {name} …")
        try:
            await self._map.remove_server(server_id)
        finally:
            self.busy.setText("")
            self.refresh()

    def on_test_button_clicked(self) -> None:
        self._spawn(self._test(), "Asking the servers for their kernels")

    async def _test(self) -> None:
        self.test_button.setEnabled(False)
        self.busy.setText("Asking the servers …")
        try:
            await self._map.poll_servers()
        finally:
            self.test_button.setEnabled(True)
            self.busy.setText("")
            self.servers = []  # say it again even if nothing changed
            self.refresh()

    def open_add_dialog(self) -> AddServerDialog:
        note = keyring_problem()
        if note and self._map.settings.server_token_file:
            note += " You allowed the token file: tokens go there."
        dialog = AddServerDialog(
            self._spawn,
            self.add_server,
            self,
            keyring_note=note,
            consent=self.consent_to_token_file,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def consent_to_token_file(self, values: ServerInput) -> bool:
        """Where there is no keyring, ask whether tokens may go to the 0600 file; False if
        the user said no. Asked from the Save button's slot, before the save's task runs: a
        modal question inside a running task would let the loop's other tasks wake inside
        it (qasync cannot enter a task while another one is being executed)."""
        if not values.token or self._map.settings.server_token_file:
            return True
        problem = keyring_problem()
        if problem is None:
            return True
        ok, _skip = dialogs.confirm(
            self,
            "No keyring for the token",
            f"{problem}\n\nKeep server tokens in a file only you can read "
            "(mode 0600, in kernelmon's state folder)?",
            ok_text="Keep in a file",
            can_skip=False,
            warning=True,
        )
        if ok:
            self._allow_token_file()
        return ok

    async def add_server(self, values: ServerInput) -> None:
        """What the dialog's Save does once ``consent_to_token_file`` was asked:
        ``KernelMap.add_server`` (tests, keeps the token, starts polling; without a keyring
        and without the token file allowed, the core refuses the token, keeping nothing)."""
        try:
            await self._map.add_server(
                values.url,
                values.token,
                name=values.name,
                headers=values.headers or None,
                verify_tls=values.verify_tls,
            )
        finally:
            self.refresh()

    def _allow_token_file(self) -> None:
        """The user allowed the token file: saved in the settings (and applied)."""
        if self._settings is not None:
            self._settings.apply_user(replace(self._settings.user, server_token_file=True))
        else:
            self._map.apply_settings(replace(self._map.settings, server_token_file=True))

    def attach(self, culler_panel: CullerPanel, details: KernelDetailsPane) -> None:
        """Hook into the window's other panels: the culler panel says per server who culls;
        the details pane gets "Measure usage" for a remote server's kernel."""
        self.servers_changed.connect(culler_panel.set_servers)
        culler_panel.set_servers(self.servers)
        self.usage_meter = UsageMeter(
            self._map, self._spawn, lambda: (details.kernel_id, details.model), details
        )
        layout = details.layout()
        if isinstance(layout, QVBoxLayout):
            layout.insertWidget(1, self.usage_meter)  # under the title
