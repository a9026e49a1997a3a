"""The user's settings vs the settings that run: ``SettingsController``.

The user's settings are what they chose and what is saved (the settings file). The kernel
map runs the *effective* settings: the user's, with culling off while it is paused (never
saved: resumed on the next launch) and with the folders given by ``--runtime-dir`` watched
too (for this run only). The panels show and edit the user's settings; only this
controller applies settings to the map and saves them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from ..core import KernelMap, Settings
from ..settings_file import save_settings
from .notifier import Level, Notifier


def effective_settings(settings: Settings, *, paused: bool, run_folders: Iterable[str]) -> Settings:
    """What the kernel map runs for the user's ``settings``: culling off while paused,
    and the folders given on the command line watched too."""
    changes: dict[str, Any] = {}
    if paused:
        changes["cull_idle_timeout"] = 0
    run_folders = tuple(run_folders)
    if run_folders:
        folders = tuple(settings.runtime_folders)
        changes["runtime_folders"] = folders + tuple(f for f in run_folders if f not in folders)
    return dataclasses.replace(settings, **changes) if changes else settings


class SettingsController(QObject):
    """Owns the user's settings, the pause and this run's folders; applies and saves."""

    #: ``(settings,)``: the user's settings changed (applied and saved, or not saved).
    settings_changed = Signal(object)
    #: ``(paused,)``: culling was paused or resumed.
    paused_changed = Signal(bool)
    #: ``(folders,)``: this run's watched folders (``--runtime-dir``) changed.
    run_folders_changed = Signal(object)

    def __init__(
        self,
        kernel_map: KernelMap,
        notifier: Notifier,
        settings_path: Path,
        user_settings: Settings | None = None,
        run_folders: Iterable[str] = (),
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._map = kernel_map
        self._notifier = notifier
        self.settings_path = Path(settings_path)
        self._user = user_settings or kernel_map.settings
        self._paused = False
        self.run_folders: tuple[str, ...] = tuple(run_folders)

    @property
    def user(self) -> Settings:
        """The settings the user chose (saved; while culling is paused, not the run ones)."""
        return self._user

    @property
    def paused(self) -> bool:
        return self._paused

    def effective(self) -> Settings:
        """The settings the map runs now."""
        return effective_settings(self._user, paused=self._paused, run_folders=self.run_folders)

    def apply_user(self, settings: Settings) -> None:
        """Use and save settings the user chose."""
        self._user = settings
        self._map.apply_settings(self.effective())
        problem = save_settings(settings, self.settings_path)
        if problem:
            self._notifier.notify(Level.ERROR, "Settings not saved", problem, dialog=True)
        else:
            self._notifier.status("Settings applied and saved")
        self.settings_changed.emit(settings)

    def set_paused(self, paused: bool) -> None:
        """Pause culling without changing the saved settings (resumed on the next launch)."""
        if paused == self._paused:
            return
        self._paused = paused
        self._map.apply_settings(self.effective())
        self._notifier.notify(Level.INFO, "", "culling paused" if paused else "culling resumed")
        self.paused_changed.emit(paused)

    def add_run_folders(self, folders: Iterable[str]) -> list[str]:
        """Watch these folders too, for this run; the ones that were new."""
        new = [f for f in dict.fromkeys(folders) if f not in self.run_folders]
        if new:
            self.run_folders += tuple(new)
            self._map.apply_settings(self.effective())
            self.run_folders_changed.emit(self.run_folders)
        return new
