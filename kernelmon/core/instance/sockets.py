"""The instance's files: the private folder, the socket and lock names, and the checks and
calls on the Unix socket both the server and its clients make."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from ..state import ENV_STATE_DIR, default_state_dir
from .protocol import InstanceError


def _host_name() -> str:
    """This machine's name, as far as it can be part of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "localhost"


SOCKET_NAME = f"kernelmon-{_host_name()}.sock"
LOCK_NAME = f"kernelmon-{_host_name()}.lock"
#: Unix socket paths longer than this do not fit ``sockaddr_un`` (108 bytes on Linux, 104
#: on macOS, less a margin).
MAX_SOCKET_PATH = 100


def instance_dir() -> Path:
    """The folder of the instance lock and socket: the state folder (see the module's
    docstring)."""
    return default_state_dir()


def _check_owner(st: os.stat_result, what: str) -> None:
    if st.st_uid != os.getuid():
        raise InstanceError(f"{what} belongs to another user (uid {st.st_uid}).")


def _check_kind_and_owner(
    st: os.stat_result, path: Path, is_kind: Callable[[int], bool], noun: str, wrong_kind: str
) -> None:
    """``InstanceError`` unless ``path`` (``st``) is of the kind ``is_kind`` tells (else
    "PATH WRONG_KIND") and this user's."""
    if not is_kind(st.st_mode):
        raise InstanceError(f"{path} {wrong_kind}")
    _check_owner(st, f"The {noun} {path}")


def private_dir(folder: Path) -> None:
    """Create ``folder`` (mode 0700) or make sure the existing one is this user's and
    closed to others; ``InstanceError`` if it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.stat(folder)
    except OSError as e:
        raise InstanceError(f"kernelmon cannot use the folder {folder}: {e.strerror}.") from e
    _check_kind_and_owner(st, folder, stat.S_ISDIR, "folder", "is not a folder.")
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


def connect(path: Path, timeout: float) -> socket.socket:
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


def listen(path: Path) -> socket.socket:
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


def check_socket_file(path: Path) -> None:
    """``InstanceError`` unless ``path`` (if it exists) is a socket this user owns that no
    other user can write to: a client never talks to someone else's socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise InstanceError(f"Cannot look at {path}: {e.strerror}.") from e
    wrong = "is not a socket; kernelmon leaves it alone (remove it)."
    _check_kind_and_owner(st, path, stat.S_ISSOCK, "socket", wrong)
    if st.st_mode & 0o022:
        raise InstanceError(f"The socket {path} can be written by other users; remove it.")
