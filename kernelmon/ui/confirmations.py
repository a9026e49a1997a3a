"""The questions kernelmon asks before it acts on kernels (through ``dialogs``).

kernelmon's own kernels are asked about once, with "don't ask again" (remembered in the
window's state file); before acting on another application's kernel it always warns,
naming that application.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QWidget

from . import dialogs
from .columns import short_id
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
        """``Python 3 1a2b3c4d``: how a kernel is named to people."""
        model = self._store.get(kernel_id) or {}
        return f"{model.get('display_name') or 'kernel'} {short_id(kernel_id)}"

    def ask(self, key: str, title: str, text: str, ok_text: str) -> bool:
        """Ask through ``dialogs.confirm`` unless the user said not to ask again."""
        setting = f"dont_ask/{key}"
        if str(self._window_state.value(setting, "false")).lower() == "true":
            return True
        accepted, dont_ask = dialogs.confirm(self._parent, title, text, ok_text=ok_text)
        if accepted and dont_ask:
            self._window_state.setValue(setting, "true")
        return accepted

    def ask_kernels(self, key: str, verb: str, kernel_ids: list[str], one: str, many: str) -> bool:
        """One confirmation for ``verb`` on all of ``kernel_ids``, naming them."""
        labels = [self.label(k) for k in kernel_ids]
        if len(labels) == 1:
            return self.ask(key, f"{verb} kernel", f"{verb} {labels[0]}? {one}", verb)
        named = ", ".join(labels[:NAMED_IN_CONFIRMATION])
        if len(labels) > NAMED_IN_CONFIRMATION:
            named += f" and {len(labels) - NAMED_IN_CONFIRMATION} more"
        return self.ask(
            key, f"{verb} kernels", f"{verb} {len(labels)} kernels: {named}? {many}", verb
        )

    def ask_foreign(
        self, verb: str, doing: str, kernel_ids: list[str], ok_text: str | None = None
    ) -> bool:
        """Ask before acting on kernels other applications started, naming each one's
        owner. Never skipped by "don't ask again": the risk is another application's."""
        models = {k: self._store.get(k) or {} for k in kernel_ids}
        foreign = [k for k in kernel_ids if is_foreign(models[k])]
        if not foreign:
            return True
        lines = [
            f"{self.label(k)}: {foreign_warning(models[k], doing)}"
            for k in foreign[:NAMED_IN_CONFIRMATION]
        ]
        if len(foreign) > NAMED_IN_CONFIRMATION:
            lines.append(f"… and {len(foreign) - NAMED_IN_CONFIRMATION} more.")
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
