"""The managers under comparison, behind one small interface.

* ``KernelmonContender``: kernelmon's core ``KernelMap`` (its start already waits for the
  kernel_info_reply);
* ``JupyterServerContender``: jupyter_server's ``AsyncMappingKernelManager``, with its own
  IOPub activity watching; its ``start_kernel`` returns before the kernel answers, so the
  benchmark then waits for a kernel_info_reply on a shell socket of its own;
* ``RawContender``: bare kernels (launched by hand) watched by ``RawWatcher``;
* ``CoalescedRawContender``: the same watcher with at most one wake-up per 10 ms batch;
* ``BareContender``: bare kernels and nothing else (the floor for start/shutdown).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from kernels import BareKernel, RawWatcher, ShellClient


class Contender:
    name = ""
    #: Whether the contender watches IOPub (message counts and states are available).
    watches = True
    #: Whether it has a culler.
    culls = False

    def __init__(self, root: str, runtime: str, transport: str | None) -> None:
        self.root = root
        self.runtime = runtime
        #: "ipc", "tcp", or None for the manager's own default.
        self.transport = transport
        #: Extra figures of the last start (e.g. when jupyter_server's start_kernel returned).
        self.start_extra: dict[str, float] = {}

    async def start(self) -> str:
        """Start a kernel; return when it has answered a kernel_info_request."""
        raise NotImplementedError

    async def restart(self, kid: str) -> None:
        raise NotImplementedError

    async def shutdown(self, kid: str) -> None:
        raise NotImplementedError

    def info(self, kid: str) -> dict[str, Any]:
        raise NotImplementedError

    def count(self, kid: str) -> int:
        raise NotImplementedError

    def state(self, kid: str) -> str:
        raise NotImplementedError

    def last_activity(self, kid: str) -> float:
        raise NotImplementedError

    def ids(self) -> list[str]:
        raise NotImplementedError

    async def enable_culling(self, timeout: float, interval: float) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Shut every kernel down."""
        raise NotImplementedError


class KernelmonContender(Contender):
    name = "kernelmon"
    culls = True

    def __init__(self, root: str, runtime: str, transport: str | None) -> None:
        super().__init__(root, runtime, transport)
        from kernelmon.core import KernelMap, Settings

        self.settings = Settings(root_dir=root)
        self.km = KernelMap(self.settings, connection_dir=runtime, transport=transport)

    async def start(self) -> str:
        return await self.km.start_kernel()

    async def restart(self, kid: str) -> None:
        await self.km.restart_kernel(kid)

    async def shutdown(self, kid: str) -> None:
        await self.km.shutdown_kernel(kid)

    def info(self, kid: str) -> dict[str, Any]:
        return dict(self.km.backend(kid).connection_info)

    def count(self, kid: str) -> int:
        return self.km.record(kid).messages

    def state(self, kid: str) -> str:
        return str(self.km.record(kid).execution_state)

    def last_activity(self, kid: str) -> float:
        return self.km.record(kid).last_activity.timestamp()

    def ids(self) -> list[str]:
        return list(self.km)

    async def enable_culling(self, timeout: float, interval: float) -> None:
        self.km.apply_settings(
            dataclasses.replace(self.settings, cull_idle_timeout=timeout, cull_interval=interval)
        )

    async def connect_and_leave(self, kid: str, session: str) -> None:
        """A frontend connects and goes away: its session's messages are buffered."""
        conn = await self.km.connect(kid, session, lambda ch, msg: None)
        await conn.close()

    def buffered(self, kid: str) -> int:
        return self.km.record(kid).buffered

    def buffer_received(self, kid: str) -> int:
        """Messages that went into the buffer: those still in it and those it dropped."""
        record = self.km.record(kid)
        return record.buffered + record.buffer_dropped

    def buffer_caps(self) -> tuple[int, int] | None:
        return self.settings.buffer_max_messages, self.settings.buffer_max_bytes

    async def close(self) -> None:
        await self.km.close()


class JupyterServerContender(Contender):
    name = "jupyter_server"
    culls = True

    def __init__(self, root: str, runtime: str, transport: str | None) -> None:
        super().__init__(root, runtime, transport)
        from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
        from traitlets.config import Config

        config = Config()
        if transport == "ipc":
            config.KernelManager.transport = "ipc"
            config.KernelManager.ip = os.path.join(runtime, "js-ipc")
        self.mkm = AsyncMappingKernelManager(root_dir=root, connection_dir=runtime, config=config)
        self._counts: dict[str, list[int]] = {}

    async def start(self) -> str:
        t0 = time.perf_counter()
        kid = await self.mkm.start_kernel()
        self.start_extra = {"start_returned_s": time.perf_counter() - t0}
        shell = ShellClient(self.info(kid))
        try:
            await shell.kernel_info()
        finally:
            shell.close()
        self._count_messages(kid)
        return str(kid)

    def _count_messages(self, kid: str) -> None:
        """Count what its activity watcher receives (one added call per message)."""
        stream = self.mkm.get_kernel(kid)._activity_stream
        callback = stream._recv_callback
        counter = self._counts.setdefault(kid, [0])

        def counted(msg_list: list[Any]) -> None:
            counter[0] += 1
            callback(msg_list)

        stream.on_recv(counted)

    async def restart(self, kid: str) -> None:
        future = await self.mkm.restart_kernel(kid)
        await future
        self._count_messages(kid)

    async def shutdown(self, kid: str) -> None:
        await self.mkm.shutdown_kernel(kid)
        self._counts.pop(kid, None)

    def info(self, kid: str) -> dict[str, Any]:
        return dict(self.mkm.get_kernel(kid).get_connection_info(session=False))

    def count(self, kid: str) -> int:
        return self._counts[kid][0]

    def state(self, kid: str) -> str:
        return str(self.mkm.get_kernel(kid).execution_state)

    def last_activity(self, kid: str) -> float:
        return float(self.mkm.get_kernel(kid).last_activity.timestamp())

    def ids(self) -> list[str]:
        return list(self.mkm.list_kernel_ids())

    async def enable_culling(self, timeout: float, interval: float) -> None:
        # Its traits are whole seconds; the culler starts with the first kernel, so set it
        # up again now that the kernels are running.
        self.mkm.cull_idle_timeout = int(timeout)
        self.mkm.cull_interval = max(1, int(interval))
        self.mkm._initialized_culler = False
        self.mkm._culler_callback = None
        self.mkm.initialize_culler()

    async def connect_and_leave(self, kid: str, session: str) -> None:
        """What its websocket handler does when a frontend leaves: ``start_buffering`` with
        the frontend's shell, control, stdin and iopub streams."""
        km = self.mkm.get_kernel(kid)
        identity = session.encode()
        channels = {
            "shell": km.connect_shell(identity=identity),
            "control": km.connect_control(identity=identity),
            "stdin": km.connect_stdin(identity=identity),
            "iopub": km.connect_iopub(),
        }
        self.mkm.start_buffering(kid, session, channels)

    def buffered(self, kid: str) -> int:
        info = self.mkm._kernel_buffers.get(kid)
        return len(info["buffer"]) if info else 0

    def buffer_received(self, kid: str) -> int:
        """Its buffer drops nothing: what went in is what is in it."""
        return self.buffered(kid)

    def buffer_caps(self) -> tuple[int, int] | None:
        return None  # unbounded

    async def close(self) -> None:
        cb = getattr(self.mkm, "_culler_callback", None)
        if cb is not None:
            cb.stop()
        await self.mkm.shutdown_all()


class BareContender(Contender):
    name = "bare"
    watches = False

    def __init__(self, root: str, runtime: str, transport: str | None) -> None:
        super().__init__(root, runtime, transport)
        self.kernels: dict[str, BareKernel] = {}

    async def start(self) -> str:
        k = BareKernel(self.runtime, self.root, self.transport or "ipc")
        kid = k.connection_file
        self.kernels[kid] = k
        try:
            await k.start()
        except BaseException:
            self.kernels.pop(kid).cleanup()
            raise
        self._started(kid)
        return kid

    def _started(self, kid: str) -> None:
        pass

    async def restart(self, kid: str) -> None:
        """The floor for a restart: shutdown_request, wait for the exit, start again."""
        k = self.kernels[kid]
        self._stopping(kid)
        await k.shutdown()
        await k.start()
        self._started(kid)

    def _stopping(self, kid: str) -> None:
        pass

    async def shutdown(self, kid: str) -> None:
        self._stopping(kid)
        k = self.kernels.pop(kid)
        try:
            await k.shutdown()
        finally:
            k.cleanup()

    def info(self, kid: str) -> dict[str, Any]:
        return self.kernels[kid].info

    def ids(self) -> list[str]:
        return list(self.kernels)

    async def close(self) -> None:
        for kid in list(self.kernels):
            try:
                await self.shutdown(kid)
            except Exception:
                self.kernels.pop(kid).cleanup()


class RawContender(BareContender):
    name = "raw"
    watches = True

    def __init__(self, root: str, runtime: str, transport: str | None) -> None:
        super().__init__(root, runtime, transport)
        self.watchers: dict[str, RawWatcher] = {}

    def _started(self, kid: str) -> None:
        self.watchers[kid] = RawWatcher(self.kernels[kid].info)

    def _stopping(self, kid: str) -> None:
        w = self.watchers.pop(kid, None)
        if w is not None:
            w.close()

    def count(self, kid: str) -> int:
        return self.watchers[kid].count

    def state(self, kid: str) -> str:
        return self.watchers[kid].state

    def last_activity(self, kid: str) -> float:
        return self.watchers[kid].last_activity


class CoalescedRawContender(RawContender):
    """The raw watcher with coalesced wake-ups: at most one drain per 10 ms batch."""

    name = "raw_coalesced"

    def _started(self, kid: str) -> None:
        self.watchers[kid] = RawWatcher(self.kernels[kid].info, coalesce=0.010)


CONTENDERS: dict[str, type[Contender]] = {
    "kernelmon": KernelmonContender,
    "jupyter_server": JupyterServerContender,
    "raw": RawContender,
    "raw_coalesced": CoalescedRawContender,
    "bare": BareContender,
}
