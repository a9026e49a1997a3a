"""Core events and failed tasks the user must hear about, told through the ``Notifier``.

The event log records every core event by itself (``EventLogView.attach``); this adds the
status bar and the tray for the ones that matter (a kernel died or was culled, memory,
finished jobs), and keeps the state folder's problem in sight until it is over.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer

from .bridge import KernelBridge
from .commands import KernelCommands
from .notifier import Level, Notifier
from .ownership import job_finished_text, memory_warning_text
from .status_bar import KernelStatusBar
from .tasks import TaskRunner

#: While the state folder has a problem, it is looked at again this often (ms), so the
#: warning goes by itself once the folder is fixed.
STATE_RECHECK_MS = 30_000


class Notices(QObject):
    """Connects the bridge's and the tasks' signals to the notifier."""

    def __init__(
        self,
        bridge: KernelBridge,
        tasks: TaskRunner,
        commands: KernelCommands,
        notifier: Notifier,
        status: KernelStatusBar,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._commands = commands
        self._notifier = notifier
        self._status = status
        self._state_problem_shown = False
        self.state_recheck_timer = QTimer(self)
        self.state_recheck_timer.setInterval(STATE_RECHECK_MS)
        self.state_recheck_timer.timeout.connect(commands.request_state_check)
        bridge.memory_warning.connect(self.on_bridge_memory_warning)
        bridge.job_finished.connect(self.on_bridge_job_finished)
        bridge.kernel_died.connect(self.on_bridge_kernel_died)
        bridge.kernel_culled.connect(self.on_bridge_kernel_culled)
        bridge.state_problem.connect(self.on_bridge_state_problem)
        tasks.task_failed.connect(self.on_tasks_task_failed)

    def on_bridge_memory_warning(self, kernel_id: str, rss: int, limit: int, total: bool) -> None:
        label = self._commands.label(kernel_id) if kernel_id else ""
        title, text = memory_warning_text(label, int(rss), int(limit), total)
        self._notifier.notify(Level.WARNING, title, text, kernel_id or None)

    def on_bridge_job_finished(self, kernel_id: str, seconds: float) -> None:
        title, text = job_finished_text(self._commands.label(kernel_id), seconds)
        self._notifier.notify(Level.INFO, title, text, kernel_id)

    def on_bridge_kernel_died(self, kernel_id: str, reason: str, will_restart: bool) -> None:
        then = "; restarting it" if will_restart else ""
        text = f"{self._commands.label(kernel_id)}: {reason}{then}"
        self._notifier.notify(Level.WARNING, "Kernel died", text, kernel_id, log=False)

    def on_bridge_kernel_culled(self, kernel_id: str, reason: str) -> None:
        text = f"{self._commands.label(kernel_id)}: {reason}"
        self._notifier.notify(Level.INFO, "Kernel culled", text, kernel_id, log=False)

    def on_bridge_state_problem(self, text: str) -> None:
        """The state folder's problem (or "" once it is over): a lasting warning in the
        status bar, the event log, and a dialog the first time."""
        self._status.set_problem(text)
        if not text:
            self.state_recheck_timer.stop()
            self._notifier.notify(Level.INFO, "", "kernelmon's state folder works again")
            return
        self.state_recheck_timer.start()
        first = not self._state_problem_shown
        self._state_problem_shown = True
        self._notifier.notify(Level.ERROR, "kernelmon's state folder", text, dialog=first)

    def on_tasks_task_failed(self, what: str, message: str, expected: bool) -> None:
        if expected:
            self._notifier.notify(Level.ERROR, f"{what} failed", message, dialog=True)
        else:
            self.show_internal_error(f"{what} failed unexpectedly: {message}")

    def show_internal_error(self, detail: str) -> None:
        """An error inside kernelmon (it keeps running): in words, and where to look."""
        text = detail + "\n\nDetails are in the log file."
        self._notifier.notify(Level.ERROR, "Internal error", text, dialog=True)
