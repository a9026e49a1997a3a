"""Where kernelmon keeps the servers the user added: ``servers.json`` in the state folder (url,
name, the names of its headers, TLS verification, the culling opt-in, the kernels kernelmon
started there) and their tokens and header values, in the keyring through ``TokenStore`` (or,
where no keyring exists and the user allowed it, in a 0600 ``server-tokens.json`` beside it).
Never a token or a header value in ``servers.json``.

Synchronous: the map calls ``read`` and ``save`` in a worker thread (``run_in_thread``);
keyring backends may block, so the token methods run there too.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import write_json_atomic
from ..threads import run_in_thread
from .config import ServerConfig, header_name_ok

if TYPE_CHECKING:
    from .secrets import TokenStore

SERVERS_FILE = "servers.json"
TOKENS_FILE = "server-tokens.json"
_MAX_FILE = 1024 * 1024


class ServerBook:
    """The servers file and the tokens (see the module). ``allow_file()``: whether the user
    allowed a token file where no keyring exists (``Settings.server_token_file``)."""

    def __init__(self, folder: Callable[[], Path], allow_file: Callable[[], bool]) -> None:
        self._folder = folder
        self._allow_file = allow_file
        #: what went wrong reading the servers file or a token (sentences)
        self.problems: list[str] = []

    @property
    def path(self) -> Path:
        return self._folder() / SERVERS_FILE

    def tokens(self) -> TokenStore:
        from .secrets import TokenStore  # keyring is slow to import: only when a token is

        return TokenStore(self._folder() / TOKENS_FILE, allow_file=self._allow_file())

    async def token(self, server_id: str) -> str | None:
        try:
            return await run_in_thread(lambda: self.tokens().get(server_id))
        except Exception as error:
            self.problems.append(f"The token of server {server_id} cannot be read: {error}")
            return None

    async def keep_token(self, server_id: str, token: str) -> None:
        """Keep the token (``TokenStoreError`` saying why not)."""
        await run_in_thread(lambda: self.tokens().set(server_id, token))

    async def keep_headers(self, server_id: str, headers: dict[str, str]) -> None:
        """Keep the header values beside the token (``TokenStoreError`` saying why not)."""
        await run_in_thread(lambda: self.tokens().set_headers(server_id, headers))

    async def load(self) -> list[ServerConfig]:
        """``read``, with each server's header values from the token store; values an older
        kernelmon wrote in the servers file move to the store, and the file is rewritten
        without them (where the store cannot take them, they stay, and ``problems`` says
        why)."""
        return await run_in_thread(self._load)

    def _load(self) -> list[ServerConfig]:
        configs = self.read()
        moved = False
        for config in configs:
            try:
                if config.headers_in_file:
                    self.tokens().set_headers(config.id, config.headers)
                    config.headers_in_file, moved = False, True
                elif config.headers:
                    kept = self.tokens().get_headers(config.id)
                    config.headers = {name: kept.get(name, "") for name in config.headers}
            except Exception as error:
                self.problems.append(f"The header values of server {config.id}: {error}")
        if moved:
            try:
                self.save([config.saved() for config in configs])
            except OSError as error:
                self.problems.append(f"The servers file {self.path} was not rewritten: {error}")
        return configs

    async def forget_token(self, server_id: str) -> None:
        try:
            await run_in_thread(lambda: self.tokens().delete(server_id))
        except Exception as error:
            self.problems.append(f"The token of server {server_id} was not forgotten: {error}")

    def save(self, servers: list[dict[str, Any]]) -> None:
        """Write the servers (``ServerConfig.saved()`` each, taken on the loop: the thread
        that writes them never reads a config the loop changes)."""
        write_json_atomic(self.path, {"version": 1, "servers": servers})

    def read(self, *, repair: bool = True) -> list[ServerConfig]:
        """The servers kept; a file that is not kernelmon's is moved aside (and named in
        ``problems``), a server entry that is not usable is skipped: never a crash.
        ``repair=False``: a look that changes nothing (a file that is not kernelmon's is
        left where it is, and holds no servers)."""
        path = self.path
        try:
            with open(path, "rb") as handle:
                raw = handle.read(_MAX_FILE + 1)
        except FileNotFoundError:
            return []
        except OSError as error:
            self.problems.append(f"The servers file {path} cannot be read: {error}")
            return []
        try:
            data = json.loads(raw) if len(raw) <= _MAX_FILE else None
            entries = data.get("servers") if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise ValueError("it holds no list of servers")
        except (ValueError, RecursionError) as error:
            if not repair:
                self.problems.append(f"The servers file {path} is not kernelmon's ({error})")
                return []
            aside = path.with_name(f"{path.name}.unreadable")
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            self.problems.append(
                f"The servers file {path} is not kernelmon's ({error}); it was moved to {aside}"
            )
            return []
        configs = []
        for entry in entries:
            try:
                configs.append(_config(entry))
            except ValueError as error:
                self.problems.append(f"A server in {path} was skipped: {error}")
        return configs


def _config(entry: Any) -> ServerConfig:
    if not isinstance(entry, dict):
        raise ValueError(f"{str(entry)[:60]!r} is not a server")
    headers = entry.get("headers") or {}
    started = entry.get("started") or []
    in_file = isinstance(headers, dict) and bool(headers)  # an older kernelmon's values
    if isinstance(headers, list) and all(isinstance(k, str) for k in headers):
        headers = dict.fromkeys(headers, "")  # names: the values are in the token store
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError("its headers are not names and values")
    for name in headers:
        if not header_name_ok(name):
            raise ValueError(f"its header {name[:60]!r} is not an HTTP header name")
    if not isinstance(started, list) or not all(isinstance(k, str) for k in started):
        raise ValueError("its started kernels are not kernel ids")
    for key in ("id", "url", "name"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ValueError(f"its {key!r} is missing")
    return ServerConfig(
        id=entry["id"],
        url=entry["url"],
        name=entry["name"],
        headers=headers,
        verify_tls=entry.get("verify_tls") is not False,
        kernelmon_culling=entry.get("kernelmon_culling") is True,
        started=started,
        headers_in_file=in_file,
    )
