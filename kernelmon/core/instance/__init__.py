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

The protocol is one JSON object per line each way (``protocol``). Bad JSON, unknown ops,
other protocol versions and failing ops get an error reply; none of them stops the server.
An op is one coroutine function, added with ``InstanceServer.add_op``. The server refuses
peers of another user (``SO_PEERCRED`` where the platform has it); the client refuses a
socket that another user owns or could write to.

Nothing here imports Qt: the window and a headless kernelmon serve the same socket.

The parts: ``protocol`` (messages, limits, errors), ``sockets`` (the folder, the names, the
checks both ends make), ``lock`` (claiming the instance), ``client`` (asking the running
one), ``server`` (serving the socket).
"""

from .client import RunningInstance, request
from .lock import InstanceLock, claim_instance
from .protocol import (
    ANSWER_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_LINE,
    MAX_REPLY,
    MAX_SKIP,
    PROTOCOL_VERSION,
    STARTUP_GRACE,
    Handler,
    InstanceError,
    NoAnswer,
    OpError,
)
from .server import InstanceServer
from .sockets import (
    LOCK_NAME,
    MAX_SOCKET_PATH,
    SOCKET_NAME,
    check_socket_file,
    instance_dir,
    peer_uid,
    private_dir,
    socket_address,
)

__all__ = [
    "ANSWER_TIMEOUT",
    "IDLE_TIMEOUT",
    "LOCK_NAME",
    "MAX_LINE",
    "MAX_REPLY",
    "MAX_SKIP",
    "MAX_SOCKET_PATH",
    "PROTOCOL_VERSION",
    "SOCKET_NAME",
    "STARTUP_GRACE",
    "Handler",
    "InstanceError",
    "InstanceLock",
    "InstanceServer",
    "NoAnswer",
    "OpError",
    "RunningInstance",
    "check_socket_file",
    "claim_instance",
    "instance_dir",
    "peer_uid",
    "private_dir",
    "request",
    "socket_address",
]
