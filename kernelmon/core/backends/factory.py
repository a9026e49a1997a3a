"""The one place that names the backend classes: the map asks this factory for a backend
of each kind and otherwise speaks only ``KernelBackend``. Tests and embedders inject their
own factory (``KernelMap(backends=...)``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..records import utcnow
from .base import KernelBackend

if TYPE_CHECKING:
    from ..machine.discovery import FoundKernel
    from ..records import KernelRecord
    from ..servers.watch import ServerWatch


class BackendFactory:
    """Makes the backend of each kind of kernel (arguments: those of the class made).

    ``clock`` is what "now" is for every timestamp a decision compares (activity, culling):
    the map's clock, handed to each backend it makes."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock

    def local(self, record: KernelRecord, **kwargs: Any) -> KernelBackend:
        """A kernel kernelmon starts (or adopts after a crash): ``local.LocalKernel``."""
        from .local import LocalKernel

        kwargs.setdefault("clock", self.clock)
        return LocalKernel(record, **kwargs)

    def external(self, found: FoundKernel, **kwargs: Any) -> KernelBackend:
        """Another application's live kernel found on this machine (its record is the
        backend's ``record``); raises ``ExternalKernelError`` when it cannot be watched."""
        from .external import ExternalKernel

        kwargs.setdefault("clock", self.clock)
        return ExternalKernel.from_found(found, **kwargs)

    def stale(self, record: KernelRecord, connection_file: str) -> KernelBackend:
        """A connection file that no live kernel serves."""
        from .stale import StaleKernel

        return StaleKernel(record, connection_file)

    def unadopted(self, record: KernelRecord, *args: Any) -> KernelBackend:
        """A kernel of an earlier run that runs but could not be adopted."""
        from .unadopted import UnadoptedKernel

        return UnadoptedKernel(record, *args)

    def server(
        self,
        record: KernelRecord,
        watch: ServerWatch,
        connection_info: dict[str, Any] | None = None,
    ) -> KernelBackend:
        """A kernel a Jupyter Server or Enterprise Gateway runs: ``server.ServerKernel``."""
        from .server import ServerKernel

        return ServerKernel(record, watch, connection_info)
