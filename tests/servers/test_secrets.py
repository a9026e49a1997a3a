"""Server tokens: in the keyring when there is one, else in a 0600 file only with consent.

keyring's own backends are used: ``fail.Keyring`` (what keyring picks when none is usable,
as on a headless CI machine), ``null.Keyring``, and a working in-memory backend for the
keyring path (keyring's API, no secrets service needed)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail, null

from kernelmon.core.servers.secrets import SERVICE, TokenStore, TokenStoreError, keyring_problem


class MemoryKeyring(KeyringBackend):
    """A working keyring backend kept in memory (keyring ships none)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.passwords.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("no such password")


def test_keyring_path_keeps_nothing_on_disk(tmp_path: Path) -> None:
    backend = MemoryKeyring()
    store = TokenStore(tmp_path / "tokens.json", backend=backend)
    assert store.problem is None
    assert store.where == "keyring"
    assert store.set("server-1", "s3cret") == "keyring"
    assert backend.passwords == {(SERVICE, "server-1"): "s3cret"}
    assert store.get("server-1") == "s3cret"
    assert not (tmp_path / "tokens.json").exists()
    store.delete("server-1")
    store.delete("server-1")  # forgetting twice is fine
    assert store.get("server-1") is None


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()], ids=["fail", "null"])
def test_no_keyring_and_no_consent_keeps_nothing(tmp_path: Path, backend: KeyringBackend) -> None:
    store = TokenStore(tmp_path / "tokens.json", backend=backend)
    assert store.problem is not None
    assert "No system keyring" in store.problem
    assert store.where == "nowhere"
    with pytest.raises(TokenStoreError, match="allow the token file"):
        store.set("server-1", "s3cret")
    assert not (tmp_path / "tokens.json").exists()
    assert store.get("server-1") is None


def test_no_keyring_with_consent_uses_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "config" / "tokens.json"
    store = TokenStore(path, allow_file=True, backend=fail.Keyring())
    assert store.where == "file"
    assert store.set("a", "one") == "file"
    assert store.set("b", "two") == "file"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"a": "one", "b": "two"}
    assert TokenStore(path, allow_file=True, backend=fail.Keyring()).get("b") == "two"
    store.delete("a")
    assert json.loads(path.read_text()) == {"b": "two"}
    assert [p.name for p in path.parent.iterdir()] == ["tokens.json"]  # no temporary left


def test_a_token_file_others_can_read_or_not_ours_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = TokenStore(path, allow_file=True, backend=fail.Keyring())
    store.set("a", "one")
    os.chmod(path, 0o644)
    with pytest.raises(TokenStoreError, match="can be read by others"):
        store.get("a")
    os.chmod(path, 0o600)
    path.write_text("[1, 2]")
    with pytest.raises(TokenStoreError, match="not kernelmon's token file"):
        store.get("a")
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(TokenStoreError, match="cannot be read"):
        store.get("a")


def test_this_machine_reports_its_keyring() -> None:
    """Whatever keyring finds here, kernelmon either uses it or says why not."""
    problem = keyring_problem()
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        assert problem is not None
    assert TokenStore("unused", backend=backend).problem == problem
    assert TokenStore("unused").problem == problem
    assert keyring_problem(MemoryKeyring()) is None
    assert keyring_problem(null.Keyring()) == keyring_problem(fail.Keyring())
