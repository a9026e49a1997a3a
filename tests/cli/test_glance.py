"""Where ``kernelmon list`` needs a map after all (an earlier run's kernels wait to be
adopted), the command holds the instance lock while the map works: no window or ``serve``
starts and adopts them meanwhile."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import uuid
from pathlib import Path

import pytest

from kernelmon.cli.target import Direct, Glance, connect
from kernelmon.core.instance import LOCK_NAME


def held_by_someone(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        return True
    finally:
        os.close(fd)
    return False


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    found = {}
    for name, env in (
        ("state", "KERNELMON_STATE_DIR"),
        ("config", "KERNELMON_CONFIG_DIR"),
        ("runtime", "JUPYTER_RUNTIME_DIR"),
    ):
        found[name] = tmp_path / name
        found[name].mkdir(mode=0o700)
        monkeypatch.setenv(env, str(found[name]))
    monkeypatch.setenv("KERNELMON_SCAN_PROCESSES", "0")
    return found


def test_the_map_of_a_list_works_under_the_instance_lock(folders: dict[str, Path]):
    # an earlier run that crashed recorded a kernel (gone since): adoption has work to do
    kid = str(uuid.uuid4())
    record = {
        "id": kid,
        "connection_file": str(folders["runtime"] / f"kernel-{kid}.json"),
        "kernel_name": "python3",
        "pid": 2**22 + 1,  # above the default pid_max: no process
    }
    state = {"version": 1, "owner": {"pid": None}, "kernels": [record]}
    (folders["state"] / "kernels-1-crashed.json").write_text(json.dumps(state))

    target = connect(read_only=True)
    try:
        assert isinstance(target, Direct), "a kernel waits to be adopted: only a map says"
        assert held_by_someone(folders["state"] / LOCK_NAME)
        assert target.call("list")["kernels"] == []  # it was gone: cleaned up
    finally:
        target.close()
    assert not held_by_someone(folders["state"] / LOCK_NAME)

    glance = connect(read_only=True)  # nothing waits now: one look
    try:
        assert isinstance(glance, Glance)
        assert glance.call("list")["kernels"] == []
    finally:
        glance.close()
    assert not held_by_someone(folders["state"] / LOCK_NAME)
