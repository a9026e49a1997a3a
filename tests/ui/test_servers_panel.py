"""The servers panel, its Add-server dialog and the console on a server's kernel, against a
real jupyter_server on loopback: "Test connection" says in words what it found (right token,
wrong token, nothing listening, bad input), Save adds the server through the map, the panel
lists it with its status, Remove forgets it, the culling checkbox opts in, and a console on a
server's kernel runs code over the websocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backends import fail
from PySide6.QtCore import QTimer

from kernelmon.core import KernelMap, Settings
from kernelmon.core.servers import TokenStoreError
from kernelmon.core.servers.book import TOKENS_FILE
from kernelmon.ui import dialogs
from kernelmon.ui.console_manager import ConsoleManager
from kernelmon.ui.server_dialog import AddServerDialog, ServerInput, parse_headers
from kernelmon.ui.servers_panel import ServersPanel, detail_text
from tests.servers.realservers import RealServer, free_port, start_jupyter_server

from .conftest import QtLoop, closed_after, wait_until

TASKS: list[asyncio.Task[Any]] = []


def spawn(coro: Any, what: str) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(coro)
    TASKS.append(task)
    return task


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    started = start_jupyter_server(tmp_path_factory.mktemp("panel-server"))
    try:
        yield started
    finally:
        started.stop()


@contextlib.contextmanager
def keyringless_map(qloop: QtLoop, root: Path) -> Iterator[KernelMap]:
    """A map on a machine without a keyring backend (whatever the test machine has)."""
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        with closed_after(
            qloop, KernelMap(Settings(root_dir=str(root)), state_dir=root / "state")
        ) as km:
            yield km
    finally:
        keyring.set_keyring(before)


@pytest.fixture(scope="module")
def smap(qloop: QtLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelMap]:
    with keyringless_map(qloop, tmp_path_factory.mktemp("servers-ui")) as km:
        yield km


def make_dialog(qtbot: Any, saved: list[ServerInput]) -> AddServerDialog:
    async def save(values: ServerInput) -> None:
        saved.append(values)

    dialog = AddServerDialog(spawn, save)
    qtbot.addWidget(dialog)
    return dialog


def test_headers_are_parsed_line_by_line() -> None:
    assert parse_headers("X-Proxy: a b\n\nCookie:  c=1 ") == {"X-Proxy": "a b", "Cookie": "c=1"}
    with pytest.raises(ValueError, match="line 2"):
        parse_headers("A: 1\nnot a header")


def test_dialog_tests_the_connection_and_says_what_it_found(
    qtbot: Any, qloop: QtLoop, server: RealServer
) -> None:
    saved: list[ServerInput] = []
    dialog = make_dialog(qtbot, saved)
    assert dialog.token.echoMode() == dialog.token.EchoMode.Password
    dialog.url.setText(server.url)
    dialog.token.setText(server.token)
    assert qloop.run(dialog.test_connection())
    assert "Connected: a Jupyter Server" in dialog.outcome.text()
    assert not dialog.progress.isVisible()
    assert dialog.test_button.isEnabled()

    dialog.token.setText("wrong")
    assert not qloop.run(dialog.test_connection())
    assert dialog.outcome.text().startswith("Failed:")
    assert "refused the token" in dialog.outcome.text()

    dialog.url.setText(f"http://127.0.0.1:{free_port()}/")
    assert not qloop.run(dialog.test_connection())
    assert "cannot be reached" in dialog.outcome.text()

    dialog.url.setText("ftp://nowhere")
    assert not qloop.run(dialog.test_connection())
    assert "Not tested" in dialog.outcome.text()

    dialog.url.setText(server.url)
    dialog.headers.setPlainText("no colon here")
    qloop.run(dialog.save())
    assert saved == []
    assert "Not saved: Header line 1" in dialog.outcome.text()
    dialog.headers.setPlainText("X-Team: data")
    dialog.name.setText("lab box")
    dialog.token.setText(server.token)
    qloop.run(dialog.save())
    assert saved == [ServerInput(server.url, server.token, "lab box", {"X-Team": "data"}, True)]
    assert dialog.outcome.text().startswith("Testing and adding")


def test_detail_text_says_who_culls() -> None:
    server = {
        "id": "s1",
        "url": "http://h:8888/",
        "name": "h",
        "kind": "enterprise_gateway",
        "status": "listing_forbidden",
        "status_text": "listing forbidden since 10:00:00 UTC",
        "error": "The gateway does not let clients list its kernels.",
        "local": False,
        "lists_kernels": False,
        "server_culls": "unknown",
        "kernelmon_culling": False,
    }
    text = detail_text(server)
    assert "Enterprise Gateway at http://h:8888/, added by you" in text
    assert "does not let clients list" in text
    assert "only the kernels it started" in text
    assert "not known" in text
    assert "leaves its kernels alone" in text
    assert "culls its idle kernels by itself" in detail_text({**server, "server_culls": True})
    assert "acts on its idle" in detail_text({**server, "kernelmon_culling": True})


def test_panel_adds_lists_opts_in_and_removes_a_server(
    qtbot: Any, qloop: QtLoop, smap: KernelMap, server: RealServer, no_dialogs: Any
) -> None:
    panel = ServersPanel(smap, spawn)
    qtbot.addWidget(panel)
    emitted: list[list[dict[str, Any]]] = []
    panel.servers_changed.connect(emitted.append)
    values = ServerInput(server.url, server.token, "lab box")
    assert panel.consent_to_token_file(values)  # the Save button's slot asks first
    qloop.run(panel.add_server(values))
    assert panel.tree.topLevelItemCount() == 1
    item = panel.tree.topLevelItem(0)
    assert item is not None
    assert [item.text(c) for c in range(3)] == ["lab box", server.url, "Jupyter Server"]
    assert item.text(3).startswith("reachable since ")
    assert "added by you" in panel.details.text()
    assert emitted
    assert emitted[-1][0]["url"] == server.url
    sid = emitted[-1][0]["id"]

    # no keyring here (tests run without one): the user was asked for the 0600 file
    assert no_dialogs["confirm"][0][0] == "No keyring for the token"
    assert smap.settings.server_token_file

    async def opt_in() -> None:  # a slot runs on the running loop, as in the app
        panel.culling.setChecked(True)

    assert not panel.culling.isChecked()
    qloop.run(opt_in())
    assert next(s for s in smap.list_servers() if s["id"] == sid)["kernelmon_culling"]
    again = panel.tree.topLevelItem(0)
    assert again is not None
    assert again.text(5) == "yes"

    async def remove() -> None:
        panel.on_remove_button_clicked()
        await TASKS[-1]

    qloop.run(remove())
    assert "keep running" in no_dialogs["confirm"][-1][1]
    assert sid not in {s["id"] for s in smap.list_servers()}
    assert panel.tree.topLevelItemCount() == 0
    assert panel.details.text() == "No server selected."


def server_kernel(server: RealServer, smap: KernelMap) -> str:
    """A kernel the server starts (its REST API), its id; tokens allowed into the 0600 file
    (no keyring here), as if the user allowed it."""
    kernel = server.request("POST", "api/kernels", {"name": "python3"})
    assert isinstance(kernel, dict)
    smap.apply_settings(replace(smap.settings, server_token_file=True))
    return str(kernel["id"])


def test_console_on_a_server_kernel_runs_code_over_the_websocket(
    qapp: Any, qloop: QtLoop, smap: KernelMap, server: RealServer
) -> None:
    kid = server_kernel(server, smap)

    async def go() -> None:
        sid = await smap.add_server(server.url, server.token, name="console box")
        try:
            await wait_until(lambda: kid in {m["id"] for m in smap.list_kernels()}, 20)
            consoles = ConsoleManager(smap, spawn)
            console = consoles.open(kid)  # deletes itself when closed
            await wait_until(lambda: console.connection is not None, 30, "connected")
            assert "Connected" in console.status.text()
            console.input.setText("print('remote', 2 + 3)")
            console.on_input_return_pressed()
            await wait_until(lambda: "remote 5" in console.text(), 30, "the output")
            console.close()
            await asyncio.sleep(0.2)
        finally:
            await smap.remove_server(sid)

    quits = qapp.quitOnLastWindowClosed()
    qapp.setQuitOnLastWindowClosed(False)  # the console is the only window: no quitting
    try:
        qloop.run(go(), timeout=90)
    finally:
        qapp.setQuitOnLastWindowClosed(quits)


def test_culler_panel_says_per_server_who_culls(qtbot: Any, tmp_path: Path) -> None:
    from kernelmon.ui.culler_panel import CullerPanel

    panel = CullerPanel(Settings(root_dir=str(tmp_path)))
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.servers_note.isVisible()
    panel.set_servers(
        [
            {"name": "lab <box>", "server_culls": True, "kernelmon_culling": False},
            {"url": "http://gw:8888/", "server_culls": "unknown", "kernelmon_culling": True},
        ]
    )
    assert panel.servers_note.isVisible()
    text = panel.servers_note.text()
    assert "<b>lab &lt;box&gt;</b>: The server culls its idle kernels by itself." in text
    assert "kernelmon's culler leaves its kernels alone." in text
    assert "<b>http://gw:8888/</b>: Whether the server culls idle kernels by itself is not" in text
    assert "kernelmon's culler acts on its idle kernels" in text
    panel.set_servers([])
    assert not panel.servers_note.isVisible()


def test_measure_usage_of_a_remote_kernel(
    qtbot: Any, qloop: QtLoop, smap: KernelMap, server: RealServer, tmp_path: Path
) -> None:
    from kernelmon.ui.culler_panel import CullerPanel
    from kernelmon.ui.details_pane import KernelDetailsPane

    kid = server_kernel(server, smap)
    panel = ServersPanel(smap, spawn)
    details = KernelDetailsPane()
    culler = CullerPanel(Settings(root_dir=str(tmp_path)))
    for widget in (panel, details, culler):
        qtbot.addWidget(widget)
    panel.attach(culler, details)
    meter = panel.usage_meter
    assert meter is not None
    details.show()

    async def go() -> str:
        sid = await smap.add_server(server.url, server.token, name="measured")
        try:
            await wait_until(lambda: kid in {m["id"] for m in smap.list_kernels()}, 20)
            details.show_kernel(kid, smap.kernel_model(kid))
            meter.follow()
            assert meter.isVisible()
            return await meter.measure(kid)
        finally:
            await smap.remove_server(sid)

    text = qloop.run(go(), timeout=60)
    assert text.startswith("Kernel on ")
    assert "memory" in text
    assert meter.answer.text() == text
    details.show_kernel(None, None)
    meter.follow()
    assert not meter.isVisible()


def test_the_token_file_question_is_asked_before_the_saves_task(
    qtbot: Any,
    qloop: QtLoop,
    server: RealServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Save in the dialog on a machine without a keyring: the modal question is asked from
    the button's slot, not inside the save's running task (where the loop's other tasks
    woke inside the question and failed: "Cannot enter into task ... while another task
    ... is being executed", two internal errors for the user)."""
    asked_in: list[asyncio.Task[Any] | None] = []

    def confirm(parent: Any, title: str, text: str, **kw: Any) -> tuple[bool, bool]:
        asked_in.append(asyncio.current_task())
        return True, False

    monkeypatch.setattr(dialogs, "confirm", confirm)
    with keyringless_map(qloop, tmp_path) as km:
        panel = ServersPanel(km, spawn)
        qtbot.addWidget(panel)
        dialog = panel.open_add_dialog()
        dialog.url.setText(server.url)
        dialog.token.setText(server.token)
        QTimer.singleShot(0, dialog.save_button.click)  # a click, outside any task
        qloop.run(wait_until(lambda: bool(km.list_servers()), timeout=30))
        assert len(asked_in) == 1
        assert asked_in[0] is None, "asked inside a running task"
        assert km.settings.server_token_file


def test_a_token_without_keyring_or_consent_is_refused_by_the_core(
    qtbot: Any, qloop: QtLoop, server: RealServer, tmp_path: Path
) -> None:
    """Where no keyring exists and the token file was not allowed (the question was not
    asked, or said no), adding a server with a token fails with the core's sentence and
    keeps nothing: no server, no token file."""
    with keyringless_map(qloop, tmp_path) as km:
        panel = ServersPanel(km, spawn)
        qtbot.addWidget(panel)
        with pytest.raises(TokenStoreError, match="token file"):
            qloop.run(panel.add_server(ServerInput(server.url, server.token, "no consent")))
        assert km.list_servers() == []
        assert not km.settings.server_token_file
        assert not list(tmp_path.rglob(TOKENS_FILE))
        assert panel.tree.topLevelItemCount() == 0
