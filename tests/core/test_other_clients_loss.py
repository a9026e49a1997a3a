"""Another client's replies are no loss of output. ipykernel numbers every message of its
session, replies included; the replies to another client (JupyterLab through a server, VS
Code, ``jupyter console``, nbclient) go to that client's sockets, never to kernelmon's, and
leave gaps in the numbers kernelmon sees on IOPub. They used to be counted as lost output
("N messages of the kernel's output never reached kernelmon") in a console open on a kernel
that another client also uses. A real ipykernel, kernelmon's frontend attached as the app
attaches it, and real clients in other processes: jupyter_client and nbclient
(tests/core/other_client.py), ``jupyter console --existing``. A real drop while another
client floods is still counted, and an input prompt sent to another client (which nothing on
IOPub shows) is told for what it may be."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kernelmon.core.events import OutputLost
from kernelmon.core.frontends import lost_text
from kernelmon.core.protocol import iopub
from tests.core.conftest import EventLog, Frontend, watched_kernel
from tests.kernels import write_spec
from tests.waiting import wait_until

OTHER_CLIENT = Path(__file__).with_name("other_client.py")


@pytest.fixture(scope="module")
def compact_spec() -> str:
    """An ipykernel whose messages are compact JSON (``"msg_id":"...``), as wherever orjson
    is installed: jupyter_client's ``Session`` then packs with it by default."""
    root = str(Path(__file__).parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    packer = "--Session.packer=tests.kernels.compact_json.pack"
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", packer]
    return write_spec(argv, env={"PYTHONPATH": path}, prefix="compact")


async def other_client(connection_file: str, *args: str) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(OTHER_CLIENT), connection_file, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done", done.stdout


async def jupyter_console(connection_file: str, ipython_dir: Path, *lines: str) -> str:
    """``jupyter console --existing`` on the kernel, typing ``lines`` (then end of input: it
    leaves, keeping the kernel); what it printed."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "jupyter_console", "--existing", connection_file, "--simple-prompt"],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, IPYTHONDIR=str(ipython_dir)),
    )
    assert done.returncode == 0, done.stderr
    assert "keeping kernel alive" in done.stdout, done.stdout
    return done.stdout


async def settled(conn, fe: Frontend, code: str) -> None:
    """Run ``code`` through kernelmon's frontend, wait for its final idle and for every gap
    left open to be settled (told)."""
    msg_id = conn.execute(code)
    await wait_until(lambda: fe.idle_for(msg_id), timeout=30, what="the idle")
    await asyncio.sleep(2 * iopub.GRACE + 0.5)


def test_another_clients_requests_are_no_lost_output(aio, kmap, tmp_path):
    """Execute requests with output, kernel_info, complete, inspect, is_complete, comm_info
    and history on shell, kernel_info and usage on control while a cell prints, a comm opened
    and messaged (no reply), a notebook run by nbclient, and ``jupyter console --existing``:
    all answered to other processes."""
    log = EventLog(kmap)
    fe = Frontend()

    async def go() -> tuple[int, int]:
        async with watched_kernel(kmap, "console", fe) as (kid, conn, feed):
            connection_file = kmap.record(kid).connection_file
            await settled(conn, fe, "print('before')")
            await other_client(connection_file)
            shown = await jupyter_console(
                connection_file, tmp_path, "print('from the console')", "6 * 7"
            )
            assert "from the console" in shown
            assert "42" in shown
            await settled(conn, fe, "print('after')")
            return feed.lost, conn.lost

    try:
        feed_lost, conn_lost = aio.run(go(), timeout=120)
    finally:
        log.unsubscribe()
    printed = fe.printed()
    for text in ("before", "other 0", "other 2", "cell 2", "other done", "from the console"):
        assert text in printed
    assert fe.count("comm_msg") == 3  # the comm's echoes came, on IOPub
    assert fe.told == []
    assert conn_lost == 0
    assert feed_lost == 0
    assert log.of(OutputLost) == []


@pytest.mark.parametrize("packer", ["json", "compact"])
def test_output_dropped_while_another_client_runs_code_is_still_counted(
    aio, kmap, tmp_path, small_queue, compact_spec, packer
):
    """The other client runs a cell that displays 3,000 values while kernelmon is stalled and
    its queue holds 50: the kernel's PUB drops most of them. What kernelmon's frontend got
    plus what kernelmon counted is what the kernel sent, plus the statuses dropped in the same
    burst: the flood's final idle and, with it dropped, its reply (which then no window
    explains), and the busy and idle around each of kernelmon's own probes of the busy
    kernel (their replies reach kernelmon). The other client's other replies are not counted
    (they were: 20 more), the drops are. Also for a kernel whose headers are compact JSON
    (kernelmon read no number of theirs: it counted nothing, whatever was lost)."""
    n = 3000
    done = tmp_path / "done"
    log = EventLog(kmap)
    fe = Frontend(stall_file=done, stall_on=("display_data",))
    probes: list[str] = []

    async def go() -> tuple[int, int, str]:
        spec = compact_spec if packer == "compact" else None
        async with watched_kernel(kmap, "lossy", fe, spec) as (kid, conn, feed):
            probe = kmap.backend(kid).probe
            send = probe.send_kernel_info

            def counted() -> Any:
                probes.append("kernel_info_request")
                return send()

            probe.send_kernel_info = counted
            await other_client(kmap.record(kid).connection_file, "flood", str(n), str(done))
            assert fe.stalled
            await settled(conn, fe, "print('after')")
            return feed.lost, conn.lost, kid

    try:
        feed_lost, lost, kid = aio.run(go(), timeout=120)
    finally:
        log.unsubscribe()
    got = fe.count("display_data")
    assert got < n
    assert n <= got + lost <= n + 2 + 2 * len(probes)
    assert feed_lost == lost
    assert sum(n for n, _text in fe.told) == lost
    assert sum(e.messages for e in log.of(OutputLost, kid)) == lost


def test_an_input_prompt_sent_to_another_client_is_told_for_what_it_may_be(aio, kmap, tmp_path):
    """Code typed in ``jupyter console`` calls ``input()``: the kernel's input_request goes on
    stdin to that console alone, a number missing from IOPub that nothing there explains (the
    status messages' parent header does not say whether the request allowed stdin). It is
    counted, and the sentence says that it may be that client's input prompt rather than
    lost output."""
    log = EventLog(kmap)
    fe = Frontend()

    async def go() -> tuple[int, str]:
        async with watched_kernel(kmap, "console", fe) as (kid, conn, _feed):
            await settled(conn, fe, "print('before')")
            lines = ("name = input('name? ')", "other", "print('hello', name)")
            await jupyter_console(kmap.record(kid).connection_file, tmp_path, *lines)
            await settled(conn, fe, "print('after')")
            return conn.lost, kid

    try:
        lost, kid = aio.run(go(), timeout=120)
    finally:
        log.unsubscribe()
    assert "hello other" in fe.printed()
    assert lost == 1
    assert fe.told == [(1, lost_text(1, 1))]
    assert "or it was an input prompt the kernel sent to that client alone" in fe.told[0][1]
    assert [e.text for e in log.of(OutputLost, kid)] == [fe.told[0][1]]
