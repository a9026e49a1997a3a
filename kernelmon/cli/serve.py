"""``kernelmon serve``: kernelmon without a window, and without Qt.

The core with discovery, the culler and adoption, serving the instance socket (the
command line's ops) until SIGTERM or SIGINT; then, as the window does when it gets those
signals, it shuts down the kernels it owns (``--leave-kernels``: leaves them running for
the next kernelmon) and lets the others be.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from .. import __version__, paths
from ..core import KernelMap
from ..core.instance import (
    InstanceError,
    InstanceLock,
    InstanceServer,
    OpError,
    RunningInstance,
    claim_instance,
)
from ..settings_file import load_settings
from .logs import LOG_FORMAT, log_file_handler
from .ops import OPS, register_ops
from .parser import folder_args, with_runtime_folders

logger = logging.getLogger(__name__)


def say(text: str) -> None:
    print(f"kernelmon serve: {text}", file=sys.stderr, flush=True)


def log_to_folder(level: str | None) -> list[logging.Handler]:
    """Log to the rotating log file in the log folder, and warnings to stderr too (a
    service manager's journal); the handlers added."""
    root = logging.getLogger()
    root.setLevel(level or "INFO")
    handlers: list[logging.Handler] = []
    try:
        handlers.append(log_file_handler())
    except OSError as e:
        say(f"cannot write the log file ({e}); logging to stderr only.")
    errors = logging.StreamHandler()
    errors.setLevel(logging.INFO if not handlers else logging.WARNING)
    errors.setFormatter(logging.Formatter(LOG_FORMAT))
    handlers.append(errors)
    for handler in handlers:
        root.addHandler(handler)
    return handlers


def serve(args: argparse.Namespace) -> int:
    """Run headless until SIGTERM/SIGINT; the exit status."""
    try:
        root, folders = folder_args(args)
    except ValueError as e:
        say(str(e))
        return 2
    handlers = log_to_folder(args.log_level)
    lock: InstanceLock | None = None
    try:
        claimed = claim_instance()
        if isinstance(claimed, RunningInstance):
            say(
                f"kernelmon is already running (pid {claimed.pid}); a second one would "
                "fight it over the same kernels, so this one does not start."
            )
            return 1
        lock = claimed
        settings, problem = load_settings(paths.settings_file(), root)
        if problem:
            logger.warning("%s", problem)
        settings = with_runtime_folders(settings, folders)
        logger.info("kernelmon %s serving headless; root folder %s", __version__, root)
        return asyncio.run(Headless(KernelMap(settings), lock, args.leave_kernels).run())
    except InstanceError as e:
        say(
            "does not start, because it cannot make sure that no other kernelmon is "
            f"running (two would fight over the same kernels): {e}"
        )
        return 1
    except Exception as e:
        logger.exception("kernelmon serve stopped on an error")
        say(f"stopped on an error: {e} (the log {paths.log_file()} has the details).")
        return 1
    finally:
        if lock is not None:
            lock.release()
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()


class Headless:
    """The running headless kernelmon: its map, the instance socket, the stop signal."""

    def __init__(self, kmap: KernelMap, lock: InstanceLock, leave_kernels: bool) -> None:
        self.kmap = kmap
        self.lock = lock
        self.leave_kernels = leave_kernels
        self.stopping: asyncio.Event | None = None

    async def refuse_window(self, request: dict[str, Any]) -> dict[str, Any]:
        raise OpError(
            f"kernelmon runs headless here (kernelmon serve, pid {os.getpid()}) and has no "
            "window; stop it first to open the window.",
            code="refused",
        )

    async def quitting(self, request: dict[str, Any]) -> dict[str, Any]:
        raise OpError(
            f"kernelmon (pid {os.getpid()}) is stopping; try again once it has gone.",
            code="quitting",
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        server: InstanceServer | None = None
        if self.lock.sock is not None:
            server = InstanceServer(self.lock, __version__)
            server.add_op("activate", self.refuse_window)
            register_ops(server, self.kmap)
            await server.start()
            self.lock.mark_serving()
        else:
            logger.error("Commands cannot reach this kernelmon: %s", self.lock.problem)
            say(f"commands cannot reach this kernelmon: {self.lock.problem}")
        try:
            await self.kmap.check_state_folder()  # its problems are logged
            try:
                adopted = await self.kmap.restore()
                logger.info("Took over %d kernel(s) of an earlier run", len(adopted))
            except Exception:  # still watch the others
                logger.exception("Taking over kernels of an earlier run failed")
            await self.kmap.start_monitoring()
            self.kmap.apply_settings(self.kmap.settings)  # the culler, also for orphans
            logger.info("Serving (pid %d) until SIGTERM or SIGINT", os.getpid())
            await self.stopping.wait()
        finally:
            await self.stop(server)
        return 0

    async def stop(self, server: InstanceServer | None) -> None:
        shut_down = not self.leave_kernels
        logger.info("Stopping; %s", "shutting kernels down" if shut_down else "leaving kernels")
        if server is not None:
            for name in ("activate", *OPS):
                server.add_op(name, self.quitting)
        try:
            await self.kmap.close(shutdown_kernels=shut_down)
        finally:
            if server is not None:
                await server.close()
        logger.info("kernelmon serve stopped")
