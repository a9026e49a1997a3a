"""A frontend's connection to a kernel, as ``KernelMap.connect`` hands it out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .channels import SessionChannels


class KernelConnection:
    """One frontend attached to a kernel through the map.

    It counts in the kernel's ``connections`` until ``close()``. ``replayed`` and
    ``dropped`` tell how many buffered messages were delivered on connect and how many were
    lost to the buffer caps while no frontend of this session was attached. ``lost`` counts
    the kernel's IOPub messages that never reached kernelmon (the kernel's PUB socket
    dropped them; found afterwards from the kernel's message counter), including those lost
    while the session was away; ``on_lost(n, text)``, if set, is called with each new loss
    and a sentence saying it.
    """

    def __init__(
        self,
        kernel_id: str,
        channels: SessionChannels,
        closer: Callable[[KernelConnection], Awaitable[None]],
        replayed: int = 0,
        dropped: int = 0,
    ) -> None:
        self.kernel_id = kernel_id
        self.channels = channels
        self.replayed = replayed
        self.dropped = dropped
        self._closer = closer
        self.closed = False
        self.lost = 0
        self.on_lost: Callable[[int, str], None] | None = None

    @property
    def session_key(self) -> str:
        return self.channels.session_key

    def send(self, channel: str, msg_type: str, content: dict[str, Any] | None = None) -> str:
        """Send a request on ``shell``, ``control`` or ``stdin``; returns its msg_id."""
        if self.closed:
            raise RuntimeError("This connection is closed; connect again to send messages.")
        return self.channels.send(channel, msg_type, content)

    def execute(
        self,
        code: str,
        *,
        silent: bool = False,
        store_history: bool = True,
        allow_stdin: bool = False,
        stop_on_error: bool = True,
    ) -> str:
        """Send an ``execute_request``; returns its msg_id."""
        return self.send(
            "shell",
            "execute_request",
            {
                "code": code,
                "silent": silent,
                "store_history": store_history,
                "user_expressions": {},
                "allow_stdin": allow_stdin,
                "stop_on_error": stop_on_error,
            },
        )

    def kernel_info(self) -> str:
        return self.send("shell", "kernel_info_request")

    async def close(self) -> None:
        """Detach; while buffering is on, what the kernel sends meanwhile is kept."""
        if self.closed:
            return
        self.closed = True
        await self._closer(self)
