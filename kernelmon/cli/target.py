"""Where a command's ops run: in the kernelmon that runs (over its instance socket), or,
when none runs, in this process on a ``KernelMap`` of its own.

Either way the command is the one kernelmon acting on the kernels: through the running
one, so its kernels are stopped by their owner (its auto-restarter would undo a signal
sent behind its back), or holding the instance lock itself, so that no window or
``serve`` starts and adopts kernels meanwhile (a launch in that moment is told to wait).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from .. import __version__, paths
from ..core import KernelMap
from ..core.instance import (
    InstanceError,
    InstanceLock,
    InstanceServer,
    NoAnswer,
    OpError,
    RunningInstance,
    claim_instance,
)
from ..settings_file import load_settings
from .ops import OPS, handlers

#: How long a command waits for the running kernelmon to finish an action (a restart may
#: take the kernel's start-up time, a shutdown its escalation to SIGKILL).
ACTION_TIMEOUT = 180.0
#: How long a command waits for the running kernelmon's answer to a question (a list, a
#: kernel's details, what a stop would do): a kernelmon that hangs is told in seconds.
READ_TIMEOUT = 30.0
#: How long a command waits for a kernelmon that is quitting (or another command) to end.
QUIT_WAIT = 30.0

#: Exit status for each error code of an op.
EXIT_CODES = {"not-found": 3, "ambiguous": 2, "bad-request": 2}


class CommandError(Exception):
    """A command failed; the message is one sentence for stderr, ``status`` the exit."""

    def __init__(self, message: str, status: int = 1, code: str = "failed") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _error(code: str, message: str) -> CommandError:
    return CommandError(message, EXIT_CODES.get(code, 1), code)


class Remote:
    """The running kernelmon does the work."""

    def __init__(self, running: RunningInstance) -> None:
        self.running = running
        self.pid = running.pid
        self.where = f"the running kernelmon (pid {running.pid})"

    def call(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        who = f"pid {self.pid}" if self.pid else "process id unknown"
        if timeout is None:
            acts = op in ("interrupt", "restart", "stop", "cleanup") and not fields.get("dry_run")
            timeout = ACTION_TIMEOUT if acts else READ_TIMEOUT
        try:
            reply = self.running.request(op, timeout=timeout, **fields)
        except NoAnswer as e:
            raise CommandError(
                f"kernelmon is running ({who}) but did not answer within {timeout:g} s: {e}"
            ) from e
        except InstanceError as e:
            raise CommandError(f"Cannot reach the running kernelmon ({who}): {e}") from e
        if reply.get("ok") is True:
            return reply
        code = str(reply.get("code") or "failed")
        error = str(reply.get("error") or "it gave no reason")
        if code == "unknown-op":
            error = (
                f"The running kernelmon ({who}) does not take this command ({error.rstrip('.')}); "
                "it may be an older version: restart it."
            )
        raise _error(code, error)

    def close(self) -> None:
        pass


class Direct:
    """No kernelmon runs: this process holds the instance lock and a map of its own."""

    def __init__(self, lock: InstanceLock, runtime_dirs: Sequence[str] = ()) -> None:
        self.lock = lock
        self.pid = None
        self.where = "this command"
        settings, _problem = load_settings(paths.settings_file())
        if runtime_dirs:
            extra = tuple(f for f in runtime_dirs if f not in settings.runtime_folders)
            folders = settings.runtime_folders + extra
            settings = dataclasses.replace(settings, runtime_folders=folders)
        self.runner = asyncio.Runner()
        self.kmap = KernelMap(settings)
        self.ops = handlers(self.kmap)
        self.server: InstanceServer | None = None
        self.closed = False
        try:
            self.runner.run(self._open())
        except BaseException:
            self.close()
            raise

    async def _open(self) -> None:
        if self.lock.sock is not None:
            self.server = InstanceServer(self.lock, __version__)
            for name in ("activate", *OPS):
                self.server.add_op(name, self._busy)
            await self.server.start()
        await self.kmap.check_state_folder()
        await self.kmap.restore()  # an earlier run's kernels are kernelmon's, not orphans
        await self.kmap.start_monitoring()

    async def _busy(self, request: dict[str, Any]) -> dict[str, Any]:
        raise OpError(
            f"A kernelmon command (pid {os.getpid()}) is working on the kernels; "
            "try again once it is done.",
            code="quitting",
        )

    def call(self, op: str, timeout: float = ACTION_TIMEOUT, **fields: Any) -> dict[str, Any]:
        request = {"op": op, **fields}
        try:
            return self.runner.run(asyncio.wait_for(self.ops[op](request), timeout))
        except OpError as e:
            raise _error(e.code, str(e)) from e
        except TimeoutError as e:
            raise CommandError(f"The {op} did not finish within {timeout:g} s.") from e

    def close(self) -> None:
        """Let the kernels go (an earlier run's ones stay recorded for the next kernelmon)
        and the instance lock."""
        if self.closed:
            return
        self.closed = True
        try:
            self.runner.run(self.kmap.close(shutdown_kernels=False))
        finally:
            try:
                if self.server is not None:
                    self.runner.run(self.server.close())
            finally:
                self.lock.release()
                self.runner.close()


def connect(runtime_dirs: Sequence[str] = (), wait: float = 0.0) -> Remote | Direct:
    """The running kernelmon, or (none running) a map of this process's own; with
    ``wait``, a running kernelmon is waited for that long to be gone (it is quitting, or
    another command is at work)."""
    try:
        claimed = claim_instance(wait=wait)
    except InstanceError as e:
        raise CommandError(
            "Cannot make sure that no other kernelmon is running, so this command does "
            f"nothing: {e}"
        ) from e
    if isinstance(claimed, RunningInstance):
        if wait:
            raise CommandError(
                f"kernelmon (pid {claimed.pid}) is still busy after {wait:g} s; try again "
                "once it is done."
            )
        return Remote(claimed)
    return Direct(claimed, runtime_dirs)
