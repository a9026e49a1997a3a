"""The questions kernelmon asks before it acts on kernels (through ``dialogs``).

kernelmon's own kernels are asked about once, with "don't ask again" (remembered in the
window's state file); before acting on another application's kernel it always warns,
naming that application. Every question here is about something that cannot be undone
(variables lost, files removed): Cancel is the default button, so Enter does nothing harmful.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QWidget

from . import dialogs
from .figures import kernel_label, plural, with_more
from .ownership import foreign_warning, is_foreign
from .store import KernelStore

#: How many kernels a confirmation names before "and N more".
NAMED_IN_CONFIRMATION = 10


class Confirmations:
    """Asks the user, as the window's child dialogs; remembers "don't ask again"."""

    def __init__(self, parent: QWidget, window_state: QSettings, store: KernelStore) -> None:
        self._parent = parent
        self._window_state = window_state
        self._store = store

    def label(self, kernel_id: str) -> str:
        """``analysis.ipynb 1a2b3c4d``: how a kernel is named to people (as the table does)."""
        return kernel_label(kernel_id, self._store.get(kernel_id))

    def ask(self, key: str, title: str, text: str, ok_text: str) -> bool:
        """Ask through ``dialogs.confirm`` (Cancel the default) unless the user said not to
        ask again."""
        setting = f"dont_ask/{key}"
        if str(self._window_state.value(setting, "false")).lower() == "true":
            return True
        accepted, dont_ask = dialogs.confirm(
            self._parent, title, text, ok_text=ok_text, warning=True
        )
        if accepted and dont_ask:
            self._window_state.setValue(setting, "true")
        return accepted

    def ask_kernels(self, key: str, verb: str, kernel_ids: list[str], one: str, many: str) -> bool:
        """One confirmation for ``verb`` on all of ``kernel_ids``, naming them."""
        labels = [self.label(k) for k in kernel_ids]
        if len(labels) == 1:
            return self.ask(key, f"{verb} kernel", f"{verb} {labels[0]}? {one}", verb)
        named = "\n".join(with_more(labels[:NAMED_IN_CONFIRMATION], len(labels)))
        return self.ask(
            key, f"{verb} kernels", f"{verb} these {len(labels)} kernels? {many}\n\n{named}", verb
        )

    def ask_shutdown_all(self, owned: int, others: int) -> bool:
        """Before shutting down every kernel kernelmon started (``others``: how many other
        applications started, which keep running)."""
        them = "the kernel" if owned == 1 else f"the {owned} kernels"
        lost = "Its variables are" if owned == 1 else "Their variables are"
        keep = ""
        if others:
            keeps = "keeps" if others == 1 else "keep"
            keep = f" The {plural(others, 'kernel')} other applications started {keeps} running."
        return self.ask(
            "shutdown_all",
            "Shut down all kernels",
            f"Shut down {them} kernelmon started? {lost} lost.{keep}",
            "Shut down all",
        )

    def ask_cleanup(self, files: list[str]) -> bool:
        """Before removing the connection files of kernels whose process is gone."""
        named = "\n".join(f for f in with_more(files[:NAMED_IN_CONFIRMATION], len(files)) if f)
        if len(files) == 1:
            text = "No process runs for this kernel; remove its connection file?"
        else:
            text = f"No process runs for these {len(files)} kernels; remove their connection files?"
        return self.ask("cleanup", "Clean up connection files", f"{text}\n\n{named}", "Clean up")

    def ask_foreign(
        self, verb: str, doing: str, kernel_ids: list[str], ok_text: str | None = None
    ) -> bool:
        """Ask before acting on kernels other applications started, naming each one's
        owner. Never skipped by "don't ask again": the risk is another application's."""
        models = {k: self._store.get(k) or {} for k in kernel_ids}
        foreign = [k for k in kernel_ids if is_foreign(models[k])]
        if not foreign:
            return True
        lines = with_more(
            [
                f"{self.label(k)}: {foreign_warning(models[k], doing)}"
                for k in foreign[:NAMED_IN_CONFIRMATION]
            ],
            len(foreign),
            end=".",
        )
        if len(foreign) == 1:
            title = f"{verb} another application's kernel"
            question = f"{verb} {self.label(foreign[0])} anyway?"
            lines = [foreign_warning(models[foreign[0]], doing)]
        else:
            title = f"{verb} other applications' kernels"
            question = f"{verb} these {len(foreign)} kernels anyway?"
        text = "\n".join(lines) + "\n\n" + question
        accepted, _ = dialogs.confirm(
            self._parent, title, text, ok_text=ok_text or verb, can_skip=False, warning=True
        )
        return accepted
