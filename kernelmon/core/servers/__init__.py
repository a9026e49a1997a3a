"""Jupyter Servers and Enterprise Gateways: the HTTP client for one server, the reading of its
answers into kernelmon's kernel model, and where server tokens are kept."""

from kernelmon.core.servers.client import ServerClient, ServerInfo, ServerKind
from kernelmon.core.servers.model import Listing, RemoteKernel, RemoteSession, kernel_fields
from kernelmon.core.servers.secrets import TokenStore, TokenStoreError, keyring_problem
from kernelmon.core.servers.status import ServerError, ServerStatus

__all__ = [
    "Listing",
    "RemoteKernel",
    "RemoteSession",
    "ServerClient",
    "ServerError",
    "ServerInfo",
    "ServerKind",
    "ServerStatus",
    "TokenStore",
    "TokenStoreError",
    "kernel_fields",
    "keyring_problem",
]
