"""The single-instance lock and socket: who wins, the protocol, and input that never stops it.

Real sockets, real processes (racing claims, a killed instance) and, when the tests run as
root, a real process of another user.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernelmon.core import instance
from kernelmon.core.instance import (
    MAX_LINE,
    InstanceError,
    InstanceLock,
    InstanceServer,
    OpError,
    RunningInstance,
    claim_instance,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "inst"


@pytest.fixture
def lock(folder: Path) -> Iterator[InstanceLock]:
    claimed = claim_instance(folder)
    assert isinstance(claimed, InstanceLock)
    yield claimed
    claimed.release()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def serving(lock: InstanceLock) -> InstanceServer:
    server = InstanceServer(lock, "9.9")
    await server.start()
    return server


async def exchange(path: Path, *lines: bytes) -> list[dict[str, Any]]:
    """Send raw lines on one connection; the replies, until the server hangs up or all
    lines are answered. (A blocking socket in a thread: when the server hangs up on a line
    too long, its reply still waits in the socket, where asyncio's transport would drop it.)"""

    def talk() -> list[dict[str, Any]]:
        replies = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            stream = sock.makefile("rb")
            for line in lines:
                try:
                    sock.sendall(line)
                except OSError:
                    pass  # hung up before reading all of a line too long: read its reply
                answer = stream.readline()
                if not answer:
                    break
                replies.append(json.loads(answer))
        return replies

    return await asyncio.to_thread(talk)


def hello(path: Path) -> dict[str, Any]:
    return instance.request(path, {"v": 1, "op": "hello"})


def test_claim_makes_a_private_socket_and_lock(lock: InstanceLock, folder: Path) -> None:
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    st = os.lstat(lock.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(lock.lock_path).st_mode) == 0o600
    assert json.loads(lock.lock_path.read_text())["pid"] == os.getpid()


def test_a_second_claim_finds_the_first(lock: InstanceLock, folder: Path) -> None:
    second = claim_instance(folder)
    assert second == RunningInstance(folder, os.getpid(), serving=False)
    lock.mark_serving()
    assert claim_instance(folder) == RunningInstance(folder, os.getpid(), serving=True)
    assert running_timeout(folder) == instance.ANSWER_TIMEOUT
    assert lock.socket_path.exists(), "the loser touches nothing"
    lock.release()
    assert not lock.socket_path.exists()
    third = claim_instance(folder)
    assert isinstance(third, InstanceLock), "released: the next one wins"
    third.release()


def running_timeout(folder: Path) -> float:
    running = claim_instance(folder)
    assert isinstance(running, RunningInstance)
    return running.answer_timeout()


def test_hello_and_a_new_op(lock: InstanceLock) -> None:
    async def main() -> None:
        server = await serving(lock)

        async def echo(request: dict[str, Any]) -> dict[str, Any]:
            if request.get("fail"):
                raise OpError("it was asked to fail")
            if request.get("crash"):
                raise RuntimeError("a bug")
            return {"echo": request.get("argv")}

        server.add_op("echo", echo)
        reply = await asyncio.to_thread(hello, lock.socket_path)
        assert reply["ok"] is True
        assert reply["pid"] == os.getpid()
        assert reply["version"] == "9.9"
        assert reply["ops"] == ["echo", "hello"]
        running = RunningInstance(lock.folder, os.getpid())
        reply = await asyncio.to_thread(running.request, "echo", argv=["a", "b"], id=7)
        assert reply == {"v": 1, "ok": True, "echo": ["a", "b"], "id": 7}
        failed, crashed, after = await exchange(
            lock.socket_path,
            b'{"op": "echo", "fail": true}\n',
            b'{"op": "echo", "crash": true}\n',
            b'{"op": "echo", "argv": [1]}\n',
        )
        assert failed["ok"] is False
        assert failed["error"] == "it was asked to fail"
        assert crashed["code"] == "internal"
        assert "a bug" in crashed["error"]
        assert after == {"v": 1, "ok": True, "echo": [1]}
        await server.close()

    run(main())


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"{not json\n", "bad-json"),
        (b"\xff\xfe\n", "bad-json"),
        (b"[1, 2]\n", "bad-request"),
        (b"[" * 100_000 + b"\n", "too-long"),
        (b'{"op": "launch-missiles"}\n', "unknown-op"),
        (b'{"op": 1}\n', "unknown-op"),
        (b'{"v": 2, "op": "hello"}\n', "unsupported-version"),
    ],
)
def test_bad_requests_get_an_error_and_the_server_keeps_serving(
    lock: InstanceLock, line: bytes, code: str
) -> None:
    async def main() -> None:
        server = await serving(lock)
        [reply, *rest] = await exchange(lock.socket_path, line, b'{"op": "hello"}\n')
        assert reply["ok"] is False
        assert reply["code"] == code
        assert reply["error"].endswith(".")
        if code == "too-long":
            assert str(MAX_LINE) in reply["error"]
        assert rest[0]["ok"] is True, "the same connection still works"
        assert (await asyncio.to_thread(hello, lock.socket_path))["ok"] is True
        await server.close()

    run(main())


def test_an_endless_line_is_hung_up_on(lock: InstanceLock) -> None:
    def flood() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(lock.socket_path))
            try:
                for _ in range(1000):  # 64 MiB, far beyond what is skipped
                    sock.sendall(b"x" * 65536)
            except OSError:
                return b"hung up"
            return b"swallowed"

    async def main() -> None:
        server = await serving(lock)
        assert await asyncio.to_thread(flood) == b"hung up"
        assert (await asyncio.to_thread(hello, lock.socket_path))["ok"] is True
        await server.close()

    run(main())


def test_silent_clients_never_block_others(
    lock: InstanceLock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(instance.server, "IDLE_TIMEOUT", 0.5)

    async def main() -> None:
        server = await serving(lock)
        silent = [await asyncio.open_unix_connection(str(lock.socket_path)) for _ in range(20)]
        # half a line, never finished
        silent[0][1].write(b'{"op": "hel')
        for _ in range(3):
            assert (await asyncio.to_thread(hello, lock.socket_path))["ok"] is True
        # the idle ones are hung up on
        for reader, _writer in silent:
            assert await reader.read() == b""
        await server.close()

    run(main())


def test_closing_hangs_up_and_releases(lock: InstanceLock) -> None:
    async def main() -> None:
        server = await serving(lock)
        reader, writer = await asyncio.open_unix_connection(str(lock.socket_path))
        writer.write(b'{"op": "hello"}\n')
        assert json.loads(await reader.readline())["ok"] is True
        await server.close()
        assert await reader.read() == b""
        assert not lock.held
        assert not lock.socket_path.exists()

    run(main())


CLAIMER = """
import sys, time
from pathlib import Path
from kernelmon.core.instance import InstanceLock, claim_instance
claimed = claim_instance(Path(sys.argv[1]))
print("won" if isinstance(claimed, InstanceLock) else "lost", flush=True)
sys.stdin.read()  # hold on until the test is done
"""


def claimer(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLAIMER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_of_instances_started_at_once_exactly_one_wins(folder: Path) -> None:
    procs = [claimer(folder) for _ in range(4)]
    try:
        outputs = [p.stdout.readline().strip() for p in procs if p.stdout is not None]
    finally:
        for p in procs:
            p.communicate(timeout=60)
    assert sorted(outputs) == ["lost", "lost", "lost", "won"], outputs


def test_a_killed_instance_s_socket_is_replaced(folder: Path) -> None:
    proc = claimer(folder)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "won"
        running = claim_instance(folder)
        assert running == RunningInstance(folder, proc.pid)
        assert running.answer_timeout() > instance.ANSWER_TIMEOUT, "young: maybe starting"
        with pytest.raises(instance.NoAnswer):
            running.request("hello", timeout=0.5)  # it never serves: no answer, no hang
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (folder / instance.SOCKET_NAME).exists(), "a dead instance leaves its socket"
    claimed = claim_instance(folder)
    assert isinstance(claimed, InstanceLock)
    try:
        assert stat.S_ISSOCK(os.lstat(claimed.socket_path).st_mode)
        assert json.loads(claimed.lock_path.read_text())["pid"] == os.getpid()
    finally:
        claimed.release()


def test_a_listener_without_the_lock_is_never_replaced(folder: Path) -> None:
    instance.private_dir(folder)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(folder / instance.SOCKET_NAME))
    listener.listen(1)
    try:
        assert claim_instance(folder) == RunningInstance(folder, None)
        assert (folder / instance.SOCKET_NAME).exists()
        # and the lock is free again for a real claim once the listener is gone
    finally:
        listener.close()
    claimed = claim_instance(folder)
    assert isinstance(claimed, InstanceLock)
    claimed.release()


def test_a_file_in_the_way_is_left_alone(folder: Path) -> None:
    instance.private_dir(folder)
    in_the_way = folder / instance.SOCKET_NAME
    in_the_way.write_text("mine")
    held = claim_instance(folder)  # the only instance still, but it cannot serve
    assert isinstance(held, InstanceLock)
    assert held.sock is None
    assert "not a socket" in str(held.problem)
    assert claim_instance(folder) == RunningInstance(folder, os.getpid())
    with pytest.raises(InstanceError, match="not a socket"):
        hello(held.socket_path)  # so another launch is refused, never run beside it
    held.release()
    assert in_the_way.read_text() == "mine"
    in_the_way.unlink()
    claimed = claim_instance(folder)
    assert isinstance(claimed, InstanceLock)
    assert claimed.sock is not None
    claimed.release()


def test_a_read_only_state_folder_still_holds_the_one_instance(tmpfs: Path) -> None:
    folder = tmpfs / "inst"
    claim_instance(folder).release()  # type: ignore[union-attr]
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    held = claim_instance(folder)
    assert isinstance(held, InstanceLock)
    assert "Read-only file system" in str(held.problem)
    assert claim_instance(folder) == RunningInstance(folder, None)
    held.release()


def test_a_long_folder_path_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    claimed = claim_instance(deep)
    assert isinstance(claimed, InstanceLock)

    async def main() -> None:
        server = await serving(claimed)
        reply = await asyncio.to_thread(hello, claimed.socket_path)
        assert reply["ok"] is True
        await server.close()

    run(main())


def test_the_folder_is_closed_to_others(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    claimed = claim_instance(folder)
    assert isinstance(claimed, InstanceLock)
    claimed.release()
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_every_launch_meets_the_same_instance_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """From a desktop session or a shell without XDG_RUNTIME_DIR alike: the state folder."""
    monkeypatch.setenv("KERNELMON_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert instance.instance_dir() == tmp_path / "state"
    monkeypatch.delenv("KERNELMON_STATE_DIR")
    with_runtime = instance.instance_dir()
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert instance.instance_dir() == with_runtime
    assert socket.gethostname() in instance.LOCK_NAME


def test_a_crash_while_binding_leaves_no_socket_others_could_write(folder: Path) -> None:
    """Under umask 002, a kernelmon killed right after binding its socket: the next launch
    still replaces the socket and wins (a group-writable one would be refused forever)."""
    crash = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from kernelmon.core.instance import claim_instance\n"
        "os.umask(0o002)\n"
        "die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.chmod = os.listen = die  # killed just after bind, whatever comes next\n"
        "claim_instance(Path(sys.argv[1]))\n"
        "die()\n"
    )
    killed = subprocess.run([sys.executable, "-c", crash, str(folder)], check=False)
    assert killed.returncode == -signal.SIGKILL
    left = folder / instance.SOCKET_NAME
    assert stat.S_IMODE(os.lstat(left).st_mode) == 0o600
    claimed = claim_instance(folder)
    assert isinstance(claimed, InstanceLock)
    claimed.release()


def test_another_host_sharing_the_folder_never_blocks_this_one(folder: Path) -> None:
    """A home folder shared over NFS: a kernelmon on another host (a process with its own
    host name) holds its instance; this host's kernelmon still becomes this host's."""
    as_other_host = ["unshare", "--uts", "sh", "-c", 'hostname other-host && exec "$@"', "-"]
    other = subprocess.Popen(
        [*as_other_host, sys.executable, "-c", CLAIMER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        won = other.stdout.readline().strip()
        if not won:
            pytest.skip(f"cannot give a process another host name: {other.communicate()[1]}")
        assert won == "won"
        claimed = claim_instance(folder)
        assert isinstance(claimed, InstanceLock)
        claimed.release()
        assert (folder / "kernelmon-other-host.lock").exists()
    finally:
        other.communicate(timeout=30)


OTHER_USER = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"op": "hello"}\\n')
except OSError:
    pass  # refused at once: the reply waits
print(s.makefile().readline(), end="")
"""


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's own folders are closed to others)."""
    top = Path(tempfile.mkdtemp(prefix="km-instance-"))
    os.chmod(top, 0o755)
    yield top / "inst"
    subprocess.run(["rm", "-rf", str(top)], check=False)


#: A Python another user can run (the tests' own may be in a folder closed to others).
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root, to run a process as another user, and a system Python",
)
def test_other_users_are_refused(shared_folder: Path) -> None:
    claimed = claim_instance(shared_folder)
    assert isinstance(claimed, InstanceLock)
    nobody = 65534

    async def main() -> None:
        server = await serving(claimed)
        # with the folder and socket as made, another user cannot even connect
        closed = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON, "-c", OTHER_USER, str(claimed.socket_path), user=nobody,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await closed.communicate()
        assert closed.returncode != 0
        assert b"PermissionError" in err
        # opened up by mistake: the peer's credentials still refuse it
        os.chmod(shared_folder, 0o755)
        os.chmod(claimed.socket_path, 0o777)
        opened = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON, "-c", OTHER_USER, str(claimed.socket_path), user=nobody,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await opened.communicate()
        assert opened.returncode == 0, err
        reply = json.loads(out)
        assert reply["ok"] is False
        assert reply["code"] == "refused"
        # and a client of this user refuses a socket others could write to
        with pytest.raises(InstanceError, match="other users"):
            await asyncio.to_thread(hello, claimed.socket_path)
        await server.close()

    run(main())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_client_never_talks_to_another_user_s_socket(lock: InstanceLock) -> None:
    os.chown(lock.socket_path, 65534, 65534, follow_symlinks=False)
    with pytest.raises(InstanceError, match="another user"):
        hello(lock.socket_path)
