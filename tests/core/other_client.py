"""Another client of a kernel, in a process of its own (as JupyterLab through a server or VS
Code would be): jupyter_client's blocking client on the kernel's connection file asks what
frontends ask, on shell and on control, and nbclient runs a notebook's cells on
the same kernel. The kernel's replies go to this process alone.

    python other_client.py CONNECTION_FILE [flood N DONE_FILE]

Prints ``done`` when every request was answered. With ``flood N DONE_FILE``, it also runs a
cell that displays N values (one message each) and then creates DONE_FILE (kernelmon's test
stalls meanwhile, so that the kernel's PUB socket drops)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import jupyter_client
import nbformat
from nbclient import NotebookClient

TIMEOUT = 30

#: A comm target in the kernel that answers each message with a message on IOPub.
ECHO_TARGET = """
def _echo(comm, _msg):
    comm.on_msg(lambda m: comm.send({"echo": m["content"]["data"]}))
get_ipython().kernel.comm_manager.register_target("kernelmon-test-echo", _echo)
"""


def answered(c: jupyter_client.BlockingKernelClient, msg_id: str) -> None:
    """Wait for the shell reply to request ``msg_id``."""
    while c.get_shell_msg(timeout=TIMEOUT)["parent_header"].get("msg_id") != msg_id:
        pass


def requests(connection_file: str, flood: int, done_file: str) -> None:
    c = jupyter_client.BlockingKernelClient(connection_file=connection_file)
    c.load_connection_file()
    c.start_channels()
    try:
        c.wait_for_ready(timeout=TIMEOUT)
        for i in range(3):
            assert c.execute(f"print('other {i}')", reply=True, timeout=TIMEOUT)
        c.kernel_info(reply=True, timeout=TIMEOUT)
        c.complete("pri", reply=True, timeout=TIMEOUT)
        c.inspect("print", reply=True, timeout=TIMEOUT)
        answered(c, c.is_complete("for i in x:"))
        c.comm_info(reply=True, timeout=TIMEOUT)
        c.history(reply=True, timeout=TIMEOUT)
        # control requests, answered by ipykernel's control thread while its shell thread
        # runs a cell that prints (both threads number messages of the one session)
        running = c.execute(
            "import time\nfor i in range(30): print(i, flush=True); time.sleep(0.01)"
        )
        for kind in ("kernel_info_request", "usage_request", "kernel_info_request"):
            msg = c.session.msg(kind)
            c.control_channel.send(msg)
            while (
                c.get_control_msg(timeout=TIMEOUT)["parent_header"].get("msg_id")
                != (msg["header"]["msg_id"])
            ):
                pass
        answered(c, running)
        # comms: no reply on shell (the echo comes on IOPub)
        assert c.execute(ECHO_TARGET, reply=True, timeout=TIMEOUT)["content"]["status"] == "ok"
        comm_id = uuid.uuid4().hex
        c.shell_channel.send(
            c.session.msg(
                "comm_open",
                {"comm_id": comm_id, "target_name": "kernelmon-test-echo", "data": {}},
            )
        )
        for i in range(3):
            c.shell_channel.send(c.session.msg("comm_msg", {"comm_id": comm_id, "data": {"i": i}}))
        echoes = 0
        while echoes < 3:
            msg = c.get_iopub_msg(timeout=TIMEOUT)
            if msg["header"]["msg_type"] == "comm_msg":
                echoes += msg["content"]["comm_id"] == comm_id
        c.shell_channel.send(c.session.msg("comm_close", {"comm_id": comm_id, "data": {}}))
        if flood:
            code = (
                "from IPython.display import display\n"
                f"for i in range({flood}): display(i)\n"
                f"open({done_file!r}, 'w').close()"
            )
            assert c.execute(code, reply=True, timeout=120)["content"]["status"] == "ok"
            # kernelmon's stalled test catches up meanwhile: what follows is not dropped
            time.sleep(1.0)
        assert c.execute("print('other done')", reply=True, timeout=TIMEOUT)
    finally:
        c.stop_channels()


async def notebook(connection_file: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"print('cell {i}')") for i in range(3)]
    client = NotebookClient(nb, timeout=TIMEOUT)
    kc = jupyter_client.AsyncKernelClient(connection_file=connection_file)
    kc.load_connection_file()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=TIMEOUT)
        client.kc = kc
        client.reset_execution_trackers()
        for index, cell in enumerate(nb.cells):
            await client.async_execute_cell(cell, index)
            assert cell.outputs[0]["text"] == f"cell {index}\n", cell.outputs
    finally:
        kc.stop_channels()


def main() -> None:
    connection_file = sys.argv[1]
    flood, done_file = (int(sys.argv[3]), sys.argv[4]) if sys.argv[2:3] == ["flood"] else (0, "")
    requests(connection_file, flood, done_file)
    asyncio.run(notebook(connection_file))
    print("done", flush=True)


if __name__ == "__main__":
    main()
