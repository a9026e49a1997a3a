"""Server tokens and header values: in the system keyring, never in the settings file.

Header values are secrets like the token (a proxy's ``Authorization`` or API key header): the
servers file keeps only their names, the values are kept as one JSON text under the user name
``<server id> headers`` (``headers_key``), beside the token.

Where no keyring backend exists (a headless machine, CI), the tokens go to a file readable by
the owner alone (0600), and only when the user agreed to it (``allow_file=True``); without
that agreement, saving a token fails with a sentence that says why and what to do.

Keyring backends may block (D-Bus, a locked wallet asking for a password): these calls are
synchronous, so the loop runs them through ``kernelmon.core.threads.run_in_thread``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import keyring.errors
from keyring.backends import chainer, fail, null

#: The keyring "service" under which kernelmon keeps tokens (the user name is the server id).
SERVICE = "kernelmon"
#: A token file over this size is not kernelmon's.
_MAX_FILE = 1024 * 1024


def headers_key(server_id: str) -> str:
    """Where a server's header values are kept (the token is under ``server_id`` itself)."""
    return f"{server_id} headers"


class TokenStoreError(Exception):
    """A token could not be kept or read; ``str(error)`` is one sentence for the user."""


def keyring_problem(backend: keyring.backend.KeyringBackend | None = None) -> str | None:
    """Why ``backend`` (default: the one keyring chose) cannot keep tokens, or None."""
    backend = backend if backend is not None else keyring.get_keyring()
    empty_chain = isinstance(backend, chainer.ChainerBackend) and not backend.backends
    if empty_chain or isinstance(backend, fail.Keyring | null.Keyring):
        return (
            "No system keyring is available here (keyring found no usable backend, e.g. no "
            "Secret Service or KWallet running), so kernelmon cannot keep server tokens "
            "safely; it can keep them in a file only you can read, if you allow it."
        )
    return None


class TokenStore:
    """Keeps one token per server id.

    ``backend``: the keyring backend to use (default: keyring's choice). ``file``: where
    tokens go when no backend is usable, only if ``allow_file`` is true.
    """

    def __init__(
        self,
        file: str | os.PathLike[str],
        *,
        allow_file: bool = False,
        backend: keyring.backend.KeyringBackend | None = None,
    ) -> None:
        self.file = Path(file)
        self.allow_file = allow_file
        self._backend = backend if backend is not None else keyring.get_keyring()
        #: why the keyring is not used (None: it is)
        self.problem = keyring_problem(self._backend)

    @property
    def where(self) -> str:
        """``"keyring"``, ``"file"``, or ``"nowhere"`` (no keyring and no consent)."""
        if self.problem is None:
            return "keyring"
        return "file" if self.allow_file else "nowhere"

    def get(self, server_id: str) -> str | None:
        if self.problem is None:
            try:
                return self._backend.get_password(SERVICE, server_id)
            except keyring.errors.KeyringError as error:
                raise TokenStoreError(f"The keyring could not read the token: {error}") from None
        if not self.allow_file:
            return None
        return self._read().get(server_id)

    def set(self, server_id: str, token: str) -> str:
        """Keeps ``token``; returns where (``"keyring"`` or ``"file"``)."""
        if not isinstance(token, str) or not token:
            raise TokenStoreError("An empty token is not kept.")
        if self.problem is None:
            try:
                self._backend.set_password(SERVICE, server_id, token)
            except keyring.errors.KeyringError as error:
                raise TokenStoreError(f"The keyring could not keep the token: {error}") from None
            return "keyring"
        if not self.allow_file:
            raise TokenStoreError(
                f"{self.problem} The token was not saved: allow the token file to keep it."
            )
        tokens = self._read()
        tokens[server_id] = token
        self._write(tokens)
        return "file"

    def get_headers(self, server_id: str) -> dict[str, str]:
        """The server's header values (empty when none are kept)."""
        text = self.get(headers_key(server_id))
        try:
            values: Any = json.loads(text) if text else {}
        except ValueError:
            values = None
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise TokenStoreError("The kept header values are not names and values.")
        return values

    def set_headers(self, server_id: str, headers: dict[str, str]) -> str:
        """Keeps the header values (as the token: ``TokenStoreError`` saying why not);
        returns where. No headers: whatever was kept is forgotten."""
        if not headers:
            self._delete_one(headers_key(server_id))
            return self.where
        return self.set(headers_key(server_id), json.dumps(dict(headers)))

    def delete(self, server_id: str) -> None:
        """Forgets the server's token and header values wherever they are kept (no error
        when there are none)."""
        self._delete_one(server_id)
        self._delete_one(headers_key(server_id))

    def _delete_one(self, server_id: str) -> None:
        if self.problem is None:
            try:
                self._backend.delete_password(SERVICE, server_id)
            except keyring.errors.PasswordDeleteError:
                pass
            except keyring.errors.KeyringError as error:
                raise TokenStoreError(f"The keyring could not forget the token: {error}") from None
        if self.file.exists():
            tokens = self._read()
            if tokens.pop(server_id, None) is not None:
                self._write(tokens)

    def _read(self) -> dict[str, str]:
        try:
            fd = os.open(self.file, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise TokenStoreError(f"The token file {self.file} cannot be read: {error}") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise TokenStoreError(
                    f"The token file {self.file} is not a file of yours; it is left alone."
                )
            if info.st_mode & 0o077:
                raise TokenStoreError(
                    f"The token file {self.file} can be read by others (mode "
                    f"{stat.S_IMODE(info.st_mode):o}); it is not used until it is 0600."
                )
            data = handle.read(_MAX_FILE + 1)
        try:
            parsed: Any = json.loads(data) if len(data) <= _MAX_FILE else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise TokenStoreError(
                f"The token file {self.file} is not kernelmon's token file; it is left alone."
            )
        return parsed

    def _write(self, tokens: dict[str, str]) -> None:
        self.file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.file.with_name(f".{self.file.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                json.dump(tokens, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.file)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise TokenStoreError(
                f"The token file {self.file} cannot be written: {error}"
            ) from None
