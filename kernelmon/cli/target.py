"""Where a command's ops run: in the kernelmon that runs (over its instance socket), or,
when none runs, in this process on a ``KernelMap`` of its own.

Either way the command is the one kernelmon acting on the kernels: through the running
one, so its kernels are stopped by their owner (its auto-restarter would undo a signal
sent behind its back), or holding the instance lock itself, so that no window or
``serve`` starts and adopts kernels meanwhile (a launch in that moment is told to wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__, paths
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
from .ops import OPS
from .parser import with_runtime_folders

if TYPE_CHECKING:
    from ..core.settings import Settings

#: How long a command waits for the running kernelmon to finish an action (a restart may
#: take the kernel's start-up time, a shutdown its escalation to SIGKILL).
ACTION_TIMEOUT = 180.0
#: How long a command waits for the running kernelmon's answer to a question (a list, a
#: kernel's details, what a stop would do): a kernelmon that hangs is told in seconds.
READ_TIMEOUT = 30.0
#: How long a command waits for a kernelmon that is quitting (or another command) to end.
QUIT_WAIT = 30.0
#: How long a command with none running waits for the Jupyter servers' first answers.
SERVER_WAIT = 5.0

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


def command_settings(runtime_dirs: Sequence[str] = ()) -> Settings:
    """The user's settings, with the runtime folders a command was given added."""
    settings, _problem = load_settings(paths.settings_file())
    return with_runtime_folders(settings, runtime_dirs)


async def _busy(request: dict[str, Any]) -> dict[str, Any]:
    raise OpError(
        f"A kernelmon command (pid {os.getpid()}) is working on the kernels; "
        "try again once it is done.",
        code="quitting",
    )


async def _answer_busy(lock: InstanceLock) -> InstanceServer | None:
    """While a command holds the instance lock, other launches and commands are told to
    wait (and do, see ``QUIT_WAIT``) instead of finding nobody at the socket."""
    if lock.sock is None:
        return None
    server = InstanceServer(lock, __version__)
    for name in ("activate", *OPS):
        server.add_op(name, _busy)
    await server.start()
    return server


class Glance:
    """No kernelmon runs and the command only lists: one look at the machine
    (``snapshot.py``) instead of a map, the instance lock held meanwhile. ``open`` returns
    None where only a map says what the kernels are: an earlier run's kernels wait to be
    adopted, or there are Jupyter servers to poll."""

    def __init__(self, lock: InstanceLock, kernels: list[dict[str, Any]]) -> None:
        self.lock = lock
        self.pid = None
        self.where = "this command"
        self.kernels = kernels

    @classmethod
    def open(cls, lock: InstanceLock, runtime_dirs: Sequence[str] = ()) -> Glance | Direct:
        """One look; where only a map says what the kernels are, the ``Direct`` map, on
        the same loop and busy answers, the lock held throughout."""
        from . import snapshot

        runner = asyncio.Runner()
        server: InstanceServer | None = None
        try:
            server = runner.run(_answer_busy(lock))
            state = snapshot.state_file()
            kernels = None
            if not (snapshot.adoption_pending(state) or snapshot.servers_known(state)):
                settings = command_settings(runtime_dirs)
                kernels = runner.run(snapshot.list_models(settings, state))
        except BaseException:
            if server is not None:
                runner.run(server.close())  # the lock too
            runner.close()
            lock.release()
            raise
        if kernels is None:
            return Direct(lock, runtime_dirs, runner=runner, server=server)
        if server is not None:
            runner.run(server.close())  # the lock too: the list is taken
        runner.close()
        return cls(lock, kernels)

    def call(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        if op != "list":
            raise CommandError(f"kernelmon cannot {op} from a list of the kernels.")
        return {"ok": True, "kernels": self.kernels}

    def close(self) -> None:
        self.lock.release()


class Direct:
    """No kernelmon runs: this process holds the instance lock and a map of its own."""

    def __init__(
        self,
        lock: InstanceLock,
        runtime_dirs: Sequence[str] = (),
        *,
        runner: asyncio.Runner | None = None,
        server: InstanceServer | None = None,
    ) -> None:
        """``runner`` and ``server``: the loop and the busy answers of a ``Glance`` that
        handed over to a map (else made here)."""
        from ..core.kernel_map import KernelMap
        from .ops import handlers

        self.lock = lock
        self.pid = None
        self.where = "this command"
        self.runner = runner if runner is not None else asyncio.Runner()
        self.server: InstanceServer | None = server
        self._answering = runner is not None
        self.closed = False
        try:
            self.kmap = KernelMap(command_settings(runtime_dirs))
        except BaseException:
            self.closed = True
            self._release()
            raise
        self.ops = handlers(self.kmap)
        try:
            self.runner.run(self._open())
        except BaseException:
            self.close()
            raise

    async def _open(self) -> None:
        if not self._answering:
            self.server = await _answer_busy(self.lock)
        await self.kmap.check_state_folder()
        await self.kmap.restore()  # an earlier run's kernels are kernelmon's, not orphans
        await self.kmap.start_monitoring()
        if self.kmap.list_servers():
            # their kernels are the servers' to list and to act on (a signal to a live
            # server's kernel is undone by its restarter): one poll first, not waited for
            # longer than a command should take
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kmap.poll_servers(), SERVER_WAIT)

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
            self._release()

    def _release(self) -> None:
        """The busy answers, the instance lock and the loop."""
        try:
            if self.server is not None:
                self.runner.run(self.server.close())
        finally:
            self.lock.release()
            self.runner.close()


def connect(
    runtime_dirs: Sequence[str] = (), wait: float = 0.0, read_only: bool = False
) -> Remote | Direct | Glance:
    """The running kernelmon, or (none running) a map of this process's own; with
    ``wait``, a running kernelmon is waited for that long to be gone (it is quitting, or
    another command is at work). ``read_only`` (``kernelmon list``): with none running,
    one look at the machine where that says all a map would (``Glance``)."""
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
    if read_only:
        return Glance.open(claimed, runtime_dirs)
    return Direct(claimed, runtime_dirs)
