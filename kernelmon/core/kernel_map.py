"""The map of running kernels: start, watch, buffer, restart, interrupt, shut down, cull.

This is the desktop counterpart of the classic notebook server's MappingKernelManager, on
an asyncio loop (plain or qasync). A ``KernelMap`` is created outside a running loop
without starting anything, and used inside one.

``KernelMap`` is a facade: it owns nothing but its parts and delegates to them. The parts
share one ``Registry`` (entries, events, settings, clock, change notification), each through
a narrow protocol of its own: the ``StateKeeper`` (keeper.py: the crash-safe state file),
the ``Culler`` (culling.py), ``Discovery`` (discovery.py: other applications' kernels),
the ``Sampler`` (sampling.py: one process-table read per tick for discovery and resources),
``Alerts`` (alerts.py: memory warnings, finished jobs), ``Frontends`` (frontends.py) and
``BusyChecks`` (busy_checks.py), ``Lifecycle`` (lifecycle.py: the commands on one
kernel: start, restart, interrupt, shut down) and ``Servers`` (servers/part.py: Jupyter
Servers and Enterprise Gateways and their kernels); adoption is the function
``adoption.restore``. Backends come from the injected ``BackendFactory`` and are asked what
they can do (``KernelBackend.refusal``), never what type they are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager

from . import adoption
from .alerts import Alerts
from .backends.base import KernelBackend
from .backends.factory import BackendFactory
from .busy_checks import BusyChecks
from .culler import cull_eta
from .culling import Culler
from .discovery import Discovery
from .events import (
    Subscriber,
)
from .frontends import Frontends
from .keeper import StateKeeper
from .lifecycle import Lifecycle
from .machine.discovery import FoundServer, ScanProblem
from .machine.resources import KernelHistory, KernelUsage
from .protocol.channels import OnMessage
from .protocol.connection import KernelConnection
from .records import KernelRecord, as_dict, utcnow
from .registry import Entry, Registry
from .sampling import Sampler
from .server_calls import ServerCalls
from .servers.parents import LocalParents
from .servers.part import Servers
from .settings import Settings
from .state import StateFile
from .workdir import cwd_for_path

logger = logging.getLogger(__name__)


class KernelMap(ServerCalls):
    """Every kernel kernelmon manages or watches, by id.

    Kernels kernelmon starts have origin ``owned``; after ``start_monitoring()``, kernels
    other applications started (found in the runtime folders) join with origin
    ``external``, ``orphan`` or ``stale`` (see discovery.py).

    Parameters beyond ``settings`` are for tests and embedding: ``clock`` (what "now" is
    for every timestamp a decision compares: culling, jobs, activity, records), ``backends``
    (the factory of kernel backends; by default ``BackendFactory(clock=clock)``),
    ``restart_poll`` and ``restart_limit`` (jupyter_client's auto-restarter: how often it
    checks the process, how many restarts in a row it tries), ``shutdown_wait`` (how long a
    shutdown waits for the kernel to exit by itself before SIGTERM, at half of it, and
    SIGKILL, at the end), ``connection_dir`` (where connection files go; the Jupyter runtime
    folder by default), ``transport`` ("ipc" or "tcp"; by default IPC where the platform has
    Unix sockets, so no TCP port is open to other users, else TCP on 127.0.0.1),
    ``state_dir`` (where the crash-safe record of running kernels is kept;
    ``$KERNELMON_STATE_DIR`` or the user's state folder by default), ``runtime_dirs`` (the
    folders searched for other applications' kernels instead of the Jupyter runtime
    folder; ``Settings.runtime_folders`` are searched too).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        backends: BackendFactory | None = None,
        restart_poll: float = 3.0,
        restart_limit: int = 5,
        shutdown_wait: float = 5.0,
        connection_dir: str | None = None,
        kernel_spec_manager: KernelSpecManager | None = None,
        transport: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        runtime_dirs: list[str] | None = None,
    ) -> None:
        self.default_kernel_name = NATIVE_KERNEL_NAME
        self.backends = backends if backends is not None else BackendFactory(clock=clock)
        self.registry = Registry(settings if settings is not None else Settings(), clock)
        registry = self.registry
        self.keeper = StateKeeper(registry, state_dir)
        self.alerts = Alerts(registry)
        self.frontends = Frontends(registry)
        self.lifecycle = Lifecycle(
            registry,
            self.keeper,
            self.frontends,
            self.backends,
            after_shutdown_of_others=lambda: self.discovery.rescan_soon(),
            kernel_spec_manager=kernel_spec_manager,
            connection_dir=connection_dir,
            transport=transport,
            restart_poll=restart_poll,
            restart_limit=restart_limit,
            shutdown_wait=shutdown_wait,
        )
        # the map's own shutdown_kernel: what the culler calls is what the map does
        self.culler = Culler(registry, lambda kernel_id: self.shutdown_kernel(kernel_id))
        self.busy_checks = BusyChecks(registry)
        self.discovery = Discovery(
            registry,
            self.backends,
            state_folder=lambda: self.keeper.state_file.folder,
            live_kernels=lambda: self.keeper.state_file.live_kernels(),
            display_name=self.lifecycle.display_name,
            runtime_dirs=runtime_dirs,
            shutdown_wait=shutdown_wait,
        )
        self.server_part = Servers(
            registry, self.backends, folder=lambda: self.keeper.state_file.folder
        )
        self.discovery.on_servers = self.server_part.sync_local
        watches = self.server_part.watches  # a console on a server's kernel: its websocket
        # a found kernel a live local server started is that server's to stop
        parents = LocalParents(
            registry,
            watches,
            lambda: self.discovery.servers,
            lambda: self.settings.server_timeout,
        )
        self.lifecycle.hand_over = parents.hand_over
        self.discovery.parent_refusal = parents.refusal
        self.discovery.server_pid = lambda sid: w.config.pid if (w := watches.get(sid)) else None
        self.frontends.server_client = lambda sid: w.client if (w := watches.get(sid)) else None
        self.sampler = Sampler(
            registry,
            self.alerts,
            scan=self.discovery.scanner,
            after=self.discovery.note_history,
        )
        # what follows a change, in this order: the state file, then finished jobs
        registry.on_change(self.keeper.on_change)
        registry.on_change(self.alerts.on_change)
        for forget in (self.sampler.forget, self.alerts.forget, self.discovery.forget):
            registry.on_forget(forget)

    # -- reading ----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.registry.settings

    @property
    def kernel_spec_manager(self) -> KernelSpecManager:
        return self.lifecycle.kernel_spec_manager

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self.registry

    def __len__(self) -> int:
        return len(self.registry.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.registry.entries))

    @property
    def _kernels(self) -> dict[str, Entry]:
        """The registry's entries by id (kept for tests that reach into a kernel's entry)."""
        return self.registry.entries

    def record(self, kernel_id: str) -> KernelRecord:
        """The live record of a kernel (read it, do not change it)."""
        return self.registry.get(kernel_id).record

    def backend(self, kernel_id: str) -> KernelBackend:
        return self.registry.get(kernel_id).backend

    def kernel_model(self, kernel_id: str) -> dict[str, Any]:
        """A JSON-safe dict describing the kernel (its keys: ``records.KernelModel``)."""
        return as_dict(self.registry.get(kernel_id).record.to_model())

    def list_kernels(self) -> list[dict[str, Any]]:
        """Every kernel's model (see ``kernel_model``)."""
        return [as_dict(e.record.to_model()) for e in self.registry]

    def cull_eta(self, kernel_id: str) -> float | None:
        """Seconds until the kernel becomes cullable (see ``culler.cull_eta``)."""
        record = self.registry.get(kernel_id).record
        return cull_eta(record, self.settings, self.registry.now())

    def kernel_specs(self) -> dict[str, dict[str, Any]]:
        """Installed kernel specs: name -> display_name, language, resource_dir."""
        specs = self.kernel_spec_manager.get_all_specs()
        return {
            name: {
                "name": name,
                "display_name": s["spec"].get("display_name", name),
                "language": s["spec"].get("language", ""),
                "resource_dir": s.get("resource_dir", ""),
            }
            for name, s in specs.items()
        }

    def cwd_for_path(self, path: str | None) -> str:
        """The working folder under ``root_dir`` for API ``path`` (``PathOutsideRoot``)."""
        return cwd_for_path(self.settings.root_dir, path)

    @property
    def last_kernel_activity(self) -> datetime:
        """The latest activity on any kernel (shutdowns included), UTC."""
        return self.registry.last_kernel_activity

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every ``KernelEvent``; returns an unsubscribe."""
        return self.registry.subscribe(callback)

    # -- the parts' public faces ------------------------------------------------------------

    @property
    def state_file(self) -> StateFile:
        """This map's record of its kernels (see ``state``)."""
        return self.keeper.state_file

    @property
    def problems(self) -> list[str]:
        """What is wrong with kernelmon's record of its kernels now (see ``StateKeeper``)."""
        return self.keeper.problems

    async def check_state_folder(self) -> list[str]:
        """Look at the state folder now; returns ``problems`` (see ``StateKeeper``)."""
        return await self.keeper.check_folder()

    @property
    def culling(self) -> bool:
        """Whether the periodic cull pass is running."""
        return self.culler.running

    @property
    def next_cull(self) -> datetime | None:
        """When the culler's next pass runs (UTC), or None while culling is off."""
        return self.culler.next_cull

    async def cull_kernels(self) -> dict[str, str]:
        """One cull pass now (see ``Culler.cull_kernels``)."""
        return await self.culler.cull_kernels()

    async def restore(self) -> list[str]:
        """Adopt the kernels of earlier kernelmon runs (see ``adoption.restore``)."""
        lifecycle = self.lifecycle
        return await adoption.restore(
            self.registry, self.keeper, lifecycle, lifecycle.shutdown_wait
        )

    async def connect(
        self, kernel_id: str, session_key: str, on_message: OnMessage
    ) -> KernelConnection:
        """Attach a frontend (see ``Frontends.connect``)."""
        return await self.frontends.connect(kernel_id, session_key, on_message)

    def notify_connect(self, kernel_id: str) -> None:
        """A frontend connected (counts in ``connections``)."""
        self.frontends.notify_connect(kernel_id)

    def notify_disconnect(self, kernel_id: str) -> None:
        """A frontend disconnected."""
        self.frontends.notify_disconnect(kernel_id)

    @property
    def monitoring(self) -> bool:
        """Whether sampling (and, if on in the settings, discovery) runs."""
        return self.sampler.running

    @property
    def runtime_folders(self) -> list[Path]:
        """The folders searched for other applications' kernels."""
        return self.discovery.folders

    @property
    def servers(self) -> list[FoundServer]:
        """Jupyter servers found in the runtime folders by the last scan."""
        return self.discovery.servers

    @property
    def discovery_problems(self) -> list[ScanProblem]:
        """Runtime files of the last scan that could not be used, and why."""
        return self.discovery.problems

    def history(self, kernel_id: str) -> KernelHistory | None:
        """CPU, memory and message-rate history of a kernel (None before its first sample)."""
        self.registry.get(kernel_id)
        return self.sampler.history(kernel_id)

    def usage(self, kernel_id: str) -> KernelUsage | None:
        """The kernel's latest resource sample, or None."""
        self.registry.get(kernel_id)
        return self.sampler.latest(kernel_id)

    def total_usage(self) -> tuple[float | None, int]:
        """(CPU % summed over every kernel's latest sample or None, RSS bytes summed)."""
        return self.sampler.total_usage()

    async def start_monitoring(self) -> None:
        """Start sampling and (if ``discover_kernels``) discovery; the first scan and sample
        are done when this returns. Call it inside the running loop, after ``restore()``
        (kernels of an earlier run are kernelmon's, not orphans). The servers the user added
        and the live local servers are polled from then on."""
        await self.server_part.start()
        await self.discovery.start()
        # a local server's kernels are its own from the start (see ``Servers.settle``)
        await self.server_part.settle(min(self.settings.server_timeout, 5.0))
        await self.sampler.tick()
        self.sampler.start()

    async def stop_monitoring(self) -> None:
        """Stop sampling and discovery; discovered kernels leave the map (and keep running)."""
        await self.sampler.stop()
        await self.server_part.stop()
        await self.discovery.stop()

    async def rescan(self) -> None:
        """Scan the runtime folders now (no-op while discovery is off)."""
        await self.discovery.rescan()

    # -- commands (see ``Lifecycle``) -------------------------------------------------------

    async def start_kernel(
        self,
        kernel_name: str | None = None,
        path: str | None = None,
        kernel_id: str | None = None,
        *,
        server_id: str | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Start a kernel and return its id once it answers a ``kernel_info_request``.

        Raises ``KernelSpecNotFound``, ``PathOutsideRoot``, ``KernelStartFailed`` or
        ``KernelStartTimeout``; after a failure no process and no map entry are left.
        With ``server_id``: on that server (``POST /api/kernels``; ``path`` under its root,
        ``env`` for gateways), its id once the server answered (``KernelStartFailed``).
        """
        if server_id is not None:
            return await self.server_part.start_kernel(server_id, kernel_name, path, env)
        return await self.lifecycle.start_kernel(
            kernel_name, path, kernel_id, self.default_kernel_name
        )

    async def restart_kernel(self, kernel_id: str) -> None:
        """Restart (same id, same folder); resolves when the new process answers.

        A kernel whose backend refuses a restart (kernels kernelmon did not start) raises
        ``NotRestartable`` with the backend's sentence and stays as it is.
        """
        await self.lifecycle.restart_kernel(kernel_id)

    async def interrupt_kernel(self, kernel_id: str) -> None:
        """Interrupt the kernel (``KernelDead``, or ``KernelmonError`` when refused)."""
        await self.lifecycle.interrupt_kernel(kernel_id)

    async def shutdown_kernel(self, kernel_id: str, now: bool = False) -> None:
        """Stop the kernel (shutdown_request, then terminate, then kill) and forget it."""
        await self.lifecycle.shutdown_kernel(kernel_id, now)

    async def shutdown_all(self, now: bool = False) -> None:
        """Shut every kernel kernelmon owns down, concurrently (never other applications')."""
        await self.lifecycle.shutdown_all(now)

    async def close(self, shutdown_kernels: bool = True) -> None:
        """Stop the culler and (by default) every kernel; the map is empty afterwards.

        With ``shutdown_kernels=False`` the kernels keep running and stay in the state file,
        so the next run's ``restore()`` adopts them. Kernels other applications started are
        only forgotten (they keep running).
        """
        self.culler.stop()
        await self.stop_monitoring()
        if shutdown_kernels:
            await self.shutdown_all()
        else:
            self.keeper.save(released=True)
            for entry in self.registry:
                self.frontends.close(entry)
                entry.backend.close()
            self.registry.clear()
        self.busy_checks.stop()
        self.registry.close()

    # -- settings ---------------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> None:
        """Use new settings from now on; a new culler interval takes effect at once."""
        if not isinstance(settings, Settings):
            raise TypeError("apply_settings needs a Settings object")
        old, self.registry.settings = self.registry.settings, settings
        self.frontends.settings_changed(list(self.registry))
        self.culler.settings_changed(old)
        self.discovery.settings_changed(old)
        self.server_part.settings_changed()
