"""The latest kernel models, by id: what every widget reads (never the ``KernelMap``).

The ``KernelBridge`` owns the store and is the only writer: it puts each model in as its
event arrives (after the bridge's throttle) and ends each burst of changes with one
``kernels_changed(ids)``. Readers (the actions, the status bar, the tray, the details pane)
refresh once per burst on that signal; the table repaints rows on the bridge's per-kernel
signals and reads its cells from here.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from .figures import is_owned

Model = dict[str, Any]


class KernelStore(QObject):
    """Kernel models by id, as the bridge last delivered them. Read only outside the bridge:
    the models are shared, not copied."""

    #: ``(ids,)``: a frozenset of the kernels added, removed or whose facts (not only their
    #: figures: activity, resources) changed in the burst that just ended. One per burst.
    kernels_changed = Signal(object)
    #: ``(total_cpu, total_rss)``: the totals of a resource sample (``total_rss`` in bytes,
    #: possibly beyond 32 bits: typed ``object``).
    usage_changed = Signal(object, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._models: dict[str, Model] = {}
        #: Totals of the latest resource sample: CPU % (None before one) and RSS bytes.
        self.total_cpu: float | None = None
        self.total_rss = 0

    # -- reading ----------------------------------------------------------------------------

    def get(self, kernel_id: str | None) -> Model | None:
        """A kernel's latest model (None for an unknown id)."""
        return None if kernel_id is None else self._models.get(kernel_id)

    def models(self) -> list[Model]:
        """Every kernel's latest model."""
        return list(self._models.values())

    def ids(self) -> list[str]:
        return list(self._models)

    def owned_ids(self) -> list[str]:
        """The kernels kernelmon started (what quitting and "Shut down all" act on)."""
        return [kid for kid, m in self._models.items() if is_owned(m)]

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self._models

    def __len__(self) -> int:
        return len(self._models)

    # -- writing (the bridge only) ----------------------------------------------------------

    def put(self, kernel_id: str, model: Model) -> None:
        self._models[kernel_id] = model

    def pop(self, kernel_id: str) -> Model | None:
        return self._models.pop(kernel_id, None)

    def set_usage(self, total_cpu: float | None, total_rss: int) -> None:
        self.total_cpu = total_cpu
        self.total_rss = int(total_rss or 0)
        self.usage_changed.emit(self.total_cpu, self.total_rss)
