"""One kernelmon per user: the instance lock and the private local socket it serves.

The kernelmon that holds an exclusive ``fcntl.flock`` on ``kernelmon-HOST.lock`` is the one
instance; it serves a Unix domain socket, ``kernelmon-HOST.sock``, beside the lock (mode
0600, made so under a umask that never lets it be anything else, in a folder of mode 0700).
The lock decides who wins when two start at once, so nobody races on the socket path; the
kernel releases it when its holder dies, however it dies, and a socket file left behind by a
dead holder is replaced once a connection to it is refused.

The folder is the state folder (``$KERNELMON_STATE_DIR`` or the user's), whatever else the
environment of a launch holds, so every kernelmon working on the same kernel records meets
the same lock; HOST is this machine's name, so kernelmons on two hosts sharing a home folder
(over NFS) never block each other.

The protocol is one JSON object per line each way, UTF-8, at most ``MAX_LINE`` bytes. A
request is ``{"v": 1, "op": NAME, ...}`` (``v`` defaults to 1; an ``id`` is echoed); a reply
is ``{"v": 1, "ok": true, ...}`` or ``{"v": 1, "ok": false, "code": CODE, "error": SENTENCE}``.
Bad JSON, unknown ops, other protocol versions and failing ops get an error reply; none of
them stops the server. An op is one coroutine function, added with ``InstanceServer.add_op``.
The server refuses peers of another user (``SO_PEERCRED`` where the platform has it); the
client refuses a socket that another user owns or could write to.

Nothing here imports Qt: the window and a headless kernelmon serve the same socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KernelmonError
from .machine.process import create_time
from .state import ENV_STATE_DIR, default_state_dir


def _host_name() -> str:
    """This machine's name, as far as it can be part of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "localhost"


logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SOCKET_NAME = f"kernelmon-{_host_name()}.sock"
LOCK_NAME = f"kernelmon-{_host_name()}.lock"
#: The longest request line the server reads (a longer one gets an error and is hung up on).
MAX_LINE = 64 * 1024
#: How much of lines too long the server skips before it hangs up on their sender.
MAX_SKIP = 16 * MAX_LINE
#: The longest reply a client reads.
MAX_REPLY = 4 * 1024 * 1024
#: A connection that sends nothing for this long is closed (it never blocks other clients).
IDLE_TIMEOUT = 30.0
#: How long a client waits for the running instance's answer.
ANSWER_TIMEOUT = 2.0
#: A running instance younger than this may still be starting up: clients wait until it is
#: this old (and at least ``ANSWER_TIMEOUT``) before they call it unresponsive.
STARTUP_GRACE = 15.0
#: Unix socket paths longer than this do not fit ``sockaddr_un`` (108 bytes on Linux, 104
#: on macOS, less a margin).
MAX_SOCKET_PATH = 100

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class InstanceError(KernelmonError):
    """The instance folder, lock or socket cannot be used (the message says why)."""


class NoAnswer(InstanceError):
    """The running instance did not answer in time (or nothing listens on its socket)."""


class OpError(KernelmonError):
    """An op refused or failed; its message is sent to the client as the error."""

    def __init__(self, message: str, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code


def instance_dir() -> Path:
    """The folder of the instance lock and socket: the state folder (see the module's
    docstring)."""
    return default_state_dir()


def _check_owner(st: os.stat_result, what: str) -> None:
    if st.st_uid != os.getuid():
        raise InstanceError(f"{what} belongs to another user (uid {st.st_uid}).")


def private_dir(folder: Path) -> None:
    """Create ``folder`` (mode 0700) or make sure the existing one is this user's and
    closed to others; ``InstanceError`` if it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.stat(folder)
    except OSError as e:
        raise InstanceError(f"kernelmon cannot use the folder {folder}: {e.strerror}.") from e
    if not stat.S_ISDIR(st.st_mode):
        raise InstanceError(f"{folder} is not a folder.")
    _check_owner(st, f"The folder {folder}")
    if st.st_mode & 0o077:
        try:
            os.chmod(folder, 0o700)
        except OSError as e:
            raise InstanceError(f"Cannot close the folder {folder} to others: {e}.") from e


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits ``sockaddr_un``: the path itself, or on Linux, for
    a long one, the same file reached through an open descriptor of its folder."""
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        yield str(path)
        return
    if not os.path.isdir("/proc/self/fd"):
        raise InstanceError(
            f"The socket path {path} is too long for this system; set {ENV_STATE_DIR} "
            "to a shorter folder."
        )
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (None where the
    platform does not say)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _connect(path: Path, timeout: float) -> socket.socket:
    """A connected, blocking socket with ``timeout``; OSError if nothing listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        with socket_address(path) as address:
            sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _read_holder(fd: int) -> tuple[int | None, bool]:
    """The PID the lock holder wrote into the lock file (None if unknown), and whether it
    said it serves its socket."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None, False
    if not isinstance(data, dict):
        return None, False
    pid = data.get("pid")
    valid = isinstance(pid, int) and not isinstance(pid, bool) and pid > 0
    return (pid if valid else None), data.get("serving") is True


@dataclass(frozen=True)
class RunningInstance:
    """Another process holds the instance lock: talk to it through its socket."""

    folder: Path
    pid: int | None
    #: The holder said it serves its socket (it is past its start-up).
    serving: bool = False

    @property
    def socket_path(self) -> Path:
        return self.folder / SOCKET_NAME

    def answer_timeout(self) -> float:
        """``ANSWER_TIMEOUT``, longer while the running instance is still starting up
        (until it serves, at most until it is ``STARTUP_GRACE`` seconds old)."""
        started = create_time(self.pid) if self.pid else None
        if started is None or self.serving:
            return ANSWER_TIMEOUT
        return max(ANSWER_TIMEOUT, STARTUP_GRACE - (time.time() - started))

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply (``ok`` true or false); ``NoAnswer`` if
        the instance does not answer within ``timeout`` (default ``answer_timeout()``)."""
        message = {"v": PROTOCOL_VERSION, "op": op, **fields}
        wait = self.answer_timeout() if timeout is None else timeout
        return request(self.socket_path, message, wait)


def request(path: Path, message: dict[str, Any], timeout: float = ANSWER_TIMEOUT) -> dict[str, Any]:
    """Send ``message`` to the instance socket at ``path`` and return its reply.

    Blocking, for command lines and for a launch before its event loop runs. Raises
    ``NoAnswer`` when nothing answers within ``timeout`` seconds and ``InstanceError``
    when the socket belongs to another user.
    """
    deadline = time.monotonic() + timeout
    sock: socket.socket | None = None
    while sock is None:
        check_socket_file(path)
        try:
            sock = _connect(path, max(0.01, deadline - time.monotonic()))
        except (FileNotFoundError, ConnectionRefusedError) as e:
            # the instance may be between taking the lock and listening
            if time.monotonic() >= deadline:
                raise NoAnswer(f"Nothing listens on {path} ({e.strerror}).") from e
            time.sleep(0.05)
        except OSError as e:
            raise NoAnswer(f"Could not connect to {path}: {e}.") from e
    with sock:
        uid = peer_uid(sock)
        if uid is not None and uid != os.getuid():
            raise InstanceError(f"The process listening on {path} runs as another user.")
        data = b""
        try:
            sock.sendall(json.dumps(message).encode("utf-8") + b"\n")
            while not data.endswith(b"\n"):
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_REPLY:
                    raise InstanceError(f"The reply on {path} is longer than {MAX_REPLY} bytes.")
        except TimeoutError as e:
            raise NoAnswer(f"No answer on {path} within {timeout:g} s.") from e
        except OSError as e:
            raise NoAnswer(f"The connection to {path} failed: {e}.") from e
    try:
        reply = json.loads(data.decode("utf-8"))
    except ValueError as e:
        why = "it hung up without answering" if not data else "its answer is not JSON"
        raise NoAnswer(f"The instance on {path} did not answer properly: {why}.") from e
    if not isinstance(reply, dict):
        raise NoAnswer(f"The instance on {path} answered something that is not an object.")
    return reply


def check_socket_file(path: Path) -> None:
    """``InstanceError`` unless ``path`` (if it exists) is a socket this user owns that no
    other user can write to: a client never talks to someone else's socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise InstanceError(f"Cannot look at {path}: {e.strerror}.") from e
    if not stat.S_ISSOCK(st.st_mode):
        raise InstanceError(f"{path} is not a socket; kernelmon leaves it alone (remove it).")
    _check_owner(st, f"The socket {path}")
    if st.st_mode & 0o022:
        raise InstanceError(f"The socket {path} can be written by other users; remove it.")


class InstanceLock:
    """Being the one kernelmon: the lock held and the socket bound and listening.

    Made by ``claim_instance()``; connections wait in the socket's backlog until an
    ``InstanceServer`` serves them. ``release()`` removes the socket file, then lets the
    lock go (the kernel lets it go too if the process dies).

    With the lock held but the socket unusable (a file in the way, an unwritable folder),
    ``sock`` is None and ``problem`` says why: this is still the only instance (others find
    the lock held), but they cannot hand their launch over to it, so they refuse to start.
    """

    def __init__(
        self, folder: Path, lock_fd: int, sock: socket.socket | None, problem: str | None = None
    ) -> None:
        self.folder = folder
        self.socket_path = folder / SOCKET_NAME
        self.lock_path = folder / LOCK_NAME
        self._lock_fd: int | None = lock_fd
        self.sock: socket.socket | None = sock
        self.problem = problem

    @property
    def held(self) -> bool:
        return self._lock_fd is not None

    def write_record(self, serving: bool) -> None:
        """Say in the lock file who holds it and whether its socket is served yet."""
        if self._lock_fd is None:
            return
        pid = os.getpid()
        record = {"pid": pid, "started": create_time(pid), "serving": serving}
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, json.dumps(record).encode("utf-8"), 0)

    def mark_serving(self) -> None:
        """The socket is served from now on: clients stop allowing for start-up time."""
        with contextlib.suppress(OSError):
            self.write_record(serving=True)

    def release(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
            self.sock.close()
            self.sock = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # closing the last descriptor releases the flock
            self._lock_fd = None


def claim_instance(folder: Path | None = None, wait: float = 0.0) -> InstanceLock | RunningInstance:
    """Become the one kernelmon in ``folder`` (default ``instance_dir()``), or learn who is.

    Returns an ``InstanceLock`` (the lock taken, the socket listening, or, when it cannot,
    ``problem`` saying why) or a ``RunningInstance`` (another process holds the lock, or,
    without the lock, listens on the socket; with ``wait``, still after trying for that many
    seconds, e.g. while it quits). Raises ``InstanceError`` when the lock cannot be taken or
    checked (another kernelmon may be running); nothing is deleted that is not proven to be
    a dead instance's socket.
    """
    deadline = time.monotonic() + wait
    while True:
        claimed = _claim(folder if folder is not None else instance_dir())
        if isinstance(claimed, InstanceLock) or time.monotonic() >= deadline:
            return claimed
        time.sleep(0.1)


def _claim(folder: Path) -> InstanceLock | RunningInstance:
    private_dir(folder)
    lock_path = folder / LOCK_NAME
    # O_CLOEXEC: kernels started later must not inherit (and so keep) the lock
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | flags, 0o600)
    except OSError as e:
        try:  # a read-only folder: an existing lock file locks all the same
            fd = os.open(lock_path, os.O_RDONLY | flags)
        except OSError:
            raise InstanceError(f"Cannot open the lock file {lock_path}: {e.strerror}.") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InstanceError(f"Cannot lock {lock_path}: {e.strerror}.") from e
            holder, serving = _read_holder(fd)
            os.close(fd)
            return RunningInstance(folder, holder, serving)
        sock_path = folder / SOCKET_NAME
        try:
            if _replace_stale_socket(sock_path):
                os.close(fd)  # something serves the socket without the lock: an instance
                return RunningInstance(folder, None)
            claimed = InstanceLock(folder, fd, _listen(sock_path))
        except InstanceError as e:
            logger.error("This kernelmon holds the instance lock but cannot serve: %s", e)
            claimed = InstanceLock(folder, fd, None, problem=str(e))
        try:
            claimed.write_record(serving=False)
        except OSError as e:  # clients then allow for start-up time; nothing else is lost
            logger.warning("Cannot write into the lock file %s: %s", lock_path, e)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    if claimed.sock is not None:
        logger.info("This kernelmon (pid %d) is the instance serving %s", os.getpid(), sock_path)
    return claimed


def _replace_stale_socket(path: Path) -> bool:
    """With the lock held: remove a socket file nobody listens on. True if something does
    listen (it is left alone); ``InstanceError`` if ``path`` is not a socket of ours."""
    check_socket_file(path)
    if not path.exists():
        return False
    try:
        probe = _connect(path, 1.0)
    except (ConnectionRefusedError, FileNotFoundError):
        logger.info("Replacing the socket file %s of an instance that is gone", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return False
    except OSError as e:
        raise InstanceError(f"Cannot tell whether something listens on {path}: {e}.") from e
    probe.close()
    logger.warning("Something listens on %s although the instance lock was free", path)
    return True


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # made 0600 by bind itself: no moment where others could write to it (a crash in
        # that moment would leave a socket every later launch refuses). The umask is the
        # process's: a file another thread makes in this moment is only made more private.
        umask = os.umask(0o177)
        try:
            with socket_address(path) as address:
                sock.bind(address)
        finally:
            os.umask(umask)
        sock.listen(16)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise InstanceError(f"Cannot listen on {path}: {e.strerror or e}.") from e
    return sock


def _error(code: str, text: str) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "ok": False, "code": code, "error": text}


class InstanceServer:
    """Serves the instance socket of an ``InstanceLock`` on the running asyncio loop.

    ``hello`` is built in; ``add_op(name, handler)`` adds an op: ``handler(request)``
    returns the reply's fields (``ok`` is added) or raises ``OpError``.
    """

    def __init__(self, lock: InstanceLock, version: str) -> None:
        self.lock = lock
        self.version = version
        self.started = time.time()
        self.ops: dict[str, Handler] = {"hello": self._hello}
        self._server: asyncio.AbstractServer | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._closing = False

    def add_op(self, name: str, handler: Handler) -> None:
        self.ops[name] = handler

    async def _hello(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": self.version,
            "protocol": PROTOCOL_VERSION,
            "started": self.started,
            "ops": sorted(self.ops),
        }

    async def start(self) -> None:
        if self.lock.sock is None:
            raise InstanceError("The instance lock was released; there is nothing to serve.")
        self._server = await asyncio.start_unix_server(self._serve_client, sock=self.lock.sock)

    async def close(self) -> None:
        """Stop serving (open connections are closed) and release the lock."""
        self._closing = True  # a connection accepted but not yet served is hung up on
        if self._server is not None:
            self._server.close()
            self._server = None
        for _ in range(3):  # connections accepted a moment ago reach _serve_client
            await asyncio.sleep(0)
        for writer in list(self._clients.values()):
            writer.close()  # its reader sees the end of the stream: the task ends
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        self.lock.release()

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients[task] = writer
        try:
            if self._closing:
                return
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else None
            if uid is not None and uid != os.getuid():
                logger.warning("Refused a connection to the instance socket from uid %d", uid)
                await self._send(
                    writer, _error("refused", "This kernelmon serves its own user only.")
                )
                return
            await self._serve_lines(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            if task is not None:
                self._clients.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve_lines(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer each line in turn. A line longer than ``MAX_LINE`` gets an error and is
        skipped (after ``MAX_SKIP`` bytes of it, or ``IDLE_TIMEOUT`` of silence, the client
        is hung up on). asyncio's ``readline`` drops or keeps the rest of a line too long
        depending on whether its end has arrived yet, hence this small splitter."""
        too_long = _error("too-long", f"A request may be at most {MAX_LINE} bytes long.")
        buffer = bytearray()
        skipping = 0  # bytes of a line too long skipped so far; 0 when not skipping
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT)
            except TimeoutError:
                return  # an idle client: hang up
            if not chunk:
                return
            buffer += chunk
            while True:
                end = buffer.find(b"\n")
                if skipping:
                    if end < 0:
                        skipping += len(buffer)
                        buffer.clear()
                        if skipping > MAX_SKIP:
                            return
                        break
                    del buffer[: end + 1]
                    skipping = 0
                elif end < 0:
                    if len(buffer) > MAX_LINE:
                        await self._send(writer, too_long)
                        skipping = len(buffer)
                        buffer.clear()
                    break
                elif end > MAX_LINE:
                    await self._send(writer, too_long)
                    del buffer[: end + 1]
                else:
                    line = bytes(buffer[: end + 1])
                    del buffer[: end + 1]
                    await self._send(writer, await self.handle_line(line))

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(json.dumps(reply).encode("utf-8") + b"\n")
        await writer.drain()

    async def handle_line(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line (never raises)."""
        try:
            message = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):
            return _error("bad-json", "The request is not a JSON object on one line.")
        if not isinstance(message, dict):
            return _error("bad-request", "The request must be a JSON object.")
        reply = await self._dispatch(message)
        request_id = message.get("id")
        if isinstance(request_id, str | int) and not isinstance(request_id, bool):
            reply["id"] = request_id
        return reply

    async def _dispatch(self, message: dict[str, Any]) -> dict[str, Any]:
        version = message.get("v", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION or isinstance(version, bool):
            return _error(
                "unsupported-version",
                f"This kernelmon speaks protocol version {PROTOCOL_VERSION}, not {version!r}.",
            )
        op = message.get("op")
        handler = self.ops.get(op) if isinstance(op, str) else None
        if handler is None:
            known = ", ".join(sorted(self.ops))
            return _error("unknown-op", f"Unknown op {op!r}; this kernelmon knows: {known}.")
        try:
            fields = await handler(message)
            reply = {"v": PROTOCOL_VERSION, "ok": True, **fields}
            json.dumps(reply)  # a handler's mistake must not break the connection
        except OpError as e:
            return _error(e.code, str(e))
        except Exception as e:
            logger.exception("The instance op %r failed", op)
            return _error("internal", f"The op {op!r} failed inside kernelmon: {e}")
        return reply
