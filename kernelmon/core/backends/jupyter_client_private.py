"""Every touch of jupyter_client's private (or undocumented, set-by-hand) attributes, in one
place: kernelmon's own kernels (``local.LocalKernel``) run on jupyter_client's async
kernel manager, and a few things it needs have no public API:

* being told right before and after each launch (start, restart and auto-restart alike),
  so that the state file records a kernel before its process exists
  (``KernelManager._async_launch_kernel``);
* being told when an auto-restart is done (``KernelRestarter._restarting`` and
  ``_restart_count``), and how many restarts the restarter allows (``_restarter``);
* adopting a process of an earlier run: a provisioner given the process by hand
  (``LocalProvisioner.process``, ``pgid``, ``ports_cached``), the arguments the
  auto-restarter relaunches with (``_launch_args``), the connection file made ours
  (``_connection_file_written``);
* letting go of a kernel without stopping it (``_close_control_socket``,
  ``_created_context``).

jupyter_client is pinned below its next major version (pyproject.toml);
tests/core/backends/test_jupyter_client_private.py reads this module's source and fails,
naming the attribute, when the installed jupyter_client lacks one it touches. Nothing else
in kernelmon touches jupyter_client's private attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jupyter_client.ioloop.manager import AsyncIOLoopKernelManager
from jupyter_client.ioloop.restarter import AsyncIOLoopKernelRestarter
from jupyter_client.provisioning.factory import KernelProvisionerFactory

#: Public-looking attributes of ``LocalProvisioner`` that jupyter_client sets itself when it
#: launches a process, and kernelmon sets (or reads) by hand for an adopted one.
PROVISIONER_HAND_SET = ("process", "pid", "pgid", "ports_cached")


class Restarter(AsyncIOLoopKernelRestarter):
    """jupyter_client's auto-restarter, which also says when a restart it made is done."""

    after_restart: Callable[[], None] | None = None

    async def poll(self) -> None:  # type: ignore[override]
        restarts_before = self._restart_count
        restarting_before = self._restarting
        await super().poll()
        restarted = self._restarting and (
            not restarting_before or self._restart_count != restarts_before
        )
        if restarted and self.after_restart is not None:
            self.after_restart()


class Manager(AsyncIOLoopKernelManager):
    """jupyter_client's manager, which tells its kernel right before and right after it
    launches a kernel process (start, restart and auto-restart alike)."""

    before_launch: Callable[[], None] | None = None
    #: called with True after a launch, with False when the launch failed
    after_launch: Callable[[bool], None] | None = None

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if self.before_launch is not None:
            self.before_launch()
        try:
            await super()._async_launch_kernel(kernel_cmd, **kw)
        except BaseException:
            if self.after_launch is not None:
                self.after_launch(False)
            raise
        if self.after_launch is not None:
            self.after_launch(True)


def provisioner_fact(km: Manager, name: str) -> Any:
    """The provisioner's ``process``, ``pid`` or ``pgid`` (None without a provisioner)."""
    assert name in PROVISIONER_HAND_SET
    return getattr(km.provisioner, name, None)


def restart_limit(km: Manager) -> int:
    """How many restarts in a row the auto-restarter allows (0 without one)."""
    restarter = km._restarter
    return int(restarter.restart_limit) if restarter is not None else 0


def hook_restarter(km: Manager, after_restart: Callable[[], None]) -> bool:
    """Start the auto-restarter and have it call ``after_restart`` when a restart it made is
    done; False if it already does (its callbacks are added once)."""
    km.start_restarter()
    restarter = km._restarter
    if not isinstance(restarter, Restarter) or restarter.after_restart is not None:
        return False
    restarter.after_restart = after_restart
    return True


def let_go(km: Manager) -> None:
    """Release the manager's sockets without stopping the kernel: the connection file stays
    (jupyter_client would delete it when the manager is garbage-collected), the control
    socket is closed and the context destroyed (garbage collection of the context would
    block on the socket; a later shutdown reopens what it needs)."""
    km.stop_restarter()
    km._connection_file_written = False
    km._close_control_socket()
    if km._created_context:
        km.context.destroy(linger=0)


async def adopt_process(
    km: Manager,
    kernel_id: str,
    connection_file: str,
    info: dict[str, Any],
    process: Any,
    relaunch_args: dict[str, Any],
) -> None:
    """Make ``km`` manage a kernel process it did not launch: its connection file (ours
    now, removed when the kernel is shut down), a provisioner holding ``process`` (a
    Popen-like handle) with no process group for jupyter_client to signal on its own, and
    the arguments the auto-restarter relaunches with."""
    km.connection_file = connection_file
    km.load_connection_info(info)  # type: ignore[arg-type]
    km._connection_file_written = True
    km.kernel_id = kernel_id
    provisioner: Any = KernelProvisionerFactory.instance(
        parent=km.parent
    ).create_provisioner_instance(kernel_id, km.kernel_spec, parent=km)
    provisioner.process = process
    provisioner.pid = process.pid
    provisioner.pgid = None  # never signalled by jupyter_client without a proof
    provisioner.connection_info = km.get_connection_info()
    provisioner.ports_cached = True  # a restart keeps the ports the kernel has
    km.provisioner = provisioner
    km._launch_args = relaunch_args
