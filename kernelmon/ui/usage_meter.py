""" "Measure usage" for a kernel on a remote server, in the details pane.

kernelmon measures the CPU and memory of the machine's own kernels from their processes;
a remote server's kernel runs where kernelmon cannot see its process. Asked for, the meter
opens the kernel's websocket through its server, sends one ``usage_request`` on the control
channel (ipykernel answers it with the CPU and memory of the kernel and its children, and of
its host), shows the answer and closes the websocket. Never polled: a request to the kernel
is activity for the server's culler (docs/servers.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from ..core import KernelMap
from ..core.errors import KernelmonError
from ..core.servers import ServerError
from .console import Spawn
from .figures import format_bytes

logger = logging.getLogger(__name__)

#: How long the kernel may take to answer [s].
USAGE_TIMEOUT = 15.0


def usage_text(content: dict[str, Any]) -> str:
    """An ipykernel ``usage_reply`` in words."""
    parts = []
    cpu = content.get("kernel_cpu")
    if isinstance(cpu, int | float):
        parts.append(f"CPU {cpu:.0f} %")
    memory = content.get("kernel_memory")
    if isinstance(memory, int | float):
        parts.append(f"memory {format_bytes(int(memory))}")
    host = content.get("hostname")
    where = f" on {host}" if host else ""
    pid = content.get("pid")
    if pid:
        where += f" (pid {pid})"
    if not parts:
        return f"The kernel{where} answered without figures (psutil is not installed there)."
    text = f"Kernel{where}: {', '.join(parts)}"
    total = (content.get("host_virtual_memory") or {}).get("total")
    host_cpu = content.get("host_cpu_percent")
    if isinstance(total, int | float) or isinstance(host_cpu, int | float):
        host_parts = []
        if isinstance(host_cpu, int | float):
            host_parts.append(f"CPU {host_cpu:.0f} % of {content.get('cpu_count', '?')} cores")
        if isinstance(total, int | float):
            host_parts.append(f"{format_bytes(int(total))} memory")
        text += f"; its host: {', '.join(host_parts)}"
    return text + "."


class UsageMeter(QWidget):
    """A button and its answer, shown for a remote server's kernel only. ``source()`` gives
    the kernel shown (id and model: the details pane's)."""

    def __init__(
        self,
        kernel_map: KernelMap,
        spawn: Spawn,
        source: Callable[[], tuple[str | None, dict[str, Any]]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("usage_meter")
        self._map = kernel_map
        self._spawn = spawn
        self._source = source
        self.kernel_id: str | None = None
        self.busy = False
        self.button = QPushButton("&Measure usage")
        self.button.setToolTip(
            "Ask this remote kernel now for its CPU and memory (one usage_request through its "
            "server's websocket; the server counts it as the kernel's activity, and drops "
            "the output it kept for a console on this kernel that is closed)"
        )
        self.button.clicked.connect(self.on_button_clicked)
        self.answer = QLabel("")
        self.answer.setObjectName("usage_answer")
        self.answer.setWordWrap(True)
        self.answer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.answer, 1)
        self.timer = QTimer(self)
        self.timer.setInterval(500)
        self.timer.timeout.connect(self.follow)
        self.timer.start()
        self.follow()

    def remote(self, model: dict[str, Any]) -> bool:
        """A kernel of a server that is not on this computer (whose process kernelmon sees)."""
        server_id = model.get("server_id")
        if not server_id:
            return False
        servers = {s.get("id"): s for s in self._map.list_servers()}
        return not (servers.get(server_id) or {}).get("local", False)

    def follow(self) -> None:
        """Show for the kernel shown, if it is a remote one."""
        kernel_id, model = self._source()
        if kernel_id != self.kernel_id:
            self.kernel_id = kernel_id
            self.answer.setText("")
        self.setVisible(kernel_id is not None and self.remote(model))

    def on_button_clicked(self) -> None:
        if self.kernel_id is not None and not self.busy:
            self._spawn(self.measure(self.kernel_id), f"Measuring kernel {self.kernel_id[:8]}")

    async def measure(self, kernel_id: str) -> str:
        """Ask the kernel for its usage; the answer (or why not) goes to the label."""
        self.busy = True
        self.button.setEnabled(False)
        self.answer.setText("Asking the kernel …")
        text = ""
        try:
            conn = await self._map.connect(kernel_id, f"kernelmon-usage-{kernel_id}", _ignore)
            try:
                request = getattr(conn, "request", None)
                if request is None:
                    text = "Only a server's kernel is measured this way."
                else:
                    reply = await request("control", "usage_request", timeout=USAGE_TIMEOUT)
                    content = reply.get("content") or {}
                    text = usage_text(content)
            finally:
                await conn.close()
        except TimeoutError:
            text = f"The kernel did not answer within {USAGE_TIMEOUT:g} s (an old ipykernel?)."
        except (ServerError, KernelmonError, RuntimeError, OSError) as error:  # sentences
            logger.info("Measuring kernel %s failed: %s", kernel_id, error)
            text = f"Not measured: {error}"
        finally:
            self.busy = False
            self.button.setEnabled(True)
        if self.kernel_id == kernel_id:
            self.answer.setText(text)
        return text


def _ignore(_channel: str, _msg: dict[str, Any]) -> None:
    pass
