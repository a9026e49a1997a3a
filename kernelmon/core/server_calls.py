"""``KernelMap``'s calls about Jupyter Servers and Enterprise Gateways (the contract of
docs/servers.md), delegated to its ``Servers`` part (servers/part.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .servers.client import ServerClient
    from .servers.part import Servers


class ServerCalls:
    """The servers' calls of ``KernelMap`` (a base class of it: see the map)."""

    server_part: Servers

    async def add_server(
        self,
        url: str,
        token: str | None = None,
        *,
        name: str | None = None,
        headers: dict[str, str] | None = None,
        verify_tls: bool = True,
    ) -> str:
        """Test the connection to a Jupyter Server or Enterprise Gateway (kind detected),
        keep it (token in the keyring) and poll it; returns its id (an already added URL:
        its id). Raises ``ServerError`` (its sentence says why), ``TokenStoreError`` or
        ``ValueError`` (not a server address, a bad header); nothing is kept then."""
        return await self.server_part.add(
            url, token, name=name, headers=headers, verify_tls=verify_tls
        )

    async def remove_server(self, server_id: str) -> None:
        """Forget a server; its kernels leave the map and keep running (``UnknownServer``)."""
        await self.server_part.remove(server_id)

    def list_servers(self) -> list[dict[str, Any]]:
        """Every server kernelmon knows, as dicts (keys: ``Servers.describe``)."""
        return self.server_part.describe_all()

    def set_server_culling(self, server_id: str, allowed: bool) -> None:
        """Let kernelmon's culler shut the server's idle kernels down, or not (default)."""
        self.server_part.set_culling(server_id, allowed)

    async def server_kernel_specs(self, server_id: str) -> dict[str, dict[str, Any]]:
        """A server's kernel specs: name -> ``display_name``, ``language``, ``default``."""
        return await self.server_part.kernel_specs(server_id)

    async def poll_servers(self) -> None:
        """Poll every server now (each poll is applied to the map)."""
        await self.server_part.poll_all()

    def server_client(self, server_id: str) -> ServerClient:
        """The server's client (its ``url``, ``headers`` with the token, ``verify_tls``: what a
        kernel's websocket to that server needs); ``UnknownServer``."""
        return self.server_part.watch(server_id).client
