"""A kernelmon process for crash tests.

``kernelmon_child.py ROOT N [BUSY]``: starts N kernels, prints their ids and pids as one JSON
line, then waits to be killed. With BUSY (seconds), the first kernel is left running
``time.sleep(BUSY)``. Options:

* ``--release``: then close the map leaving the kernels running (as "quit, keep kernels"
  does), and live on without ever reaping them;
* ``--restore``: adopt the kernels of earlier runs instead of starting any, print their
  ids, and live on;
* ``--pause WHEN:STEP --kernel-id ID``: start one kernel ID and stop for good right
  ``before`` or ``after`` the kernel process of its ``start``, ``restart`` or
  ``auto-restart`` is launched, printing ``{"paused": ..., "pid": ...}``: the test kills
  this process with SIGKILL at that instant. The pause is in jupyter_client's launch itself,
  so it is the same instant for any kernelmon.
"""

import argparse
import asyncio
import json
import os
import signal

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from kernelmon.core import KernelMap, Settings


def pause_in_launch(launch_number: int, step: str) -> None:
    """Stop forever before/after the ``launch_number``-th kernel process launch."""
    original = LocalProvisioner.launch_kernel
    launches = 0

    async def launch_kernel(self, cmd, **kwargs):
        nonlocal launches
        launches += 1
        if launches != launch_number:
            return await original(self, cmd, **kwargs)
        if step == "before":
            print(json.dumps({"paused": step, "pid": None}), flush=True)
            await asyncio.Event().wait()
        info = await original(self, cmd, **kwargs)
        print(json.dumps({"paused": step, "pid": self.pid}), flush=True)
        await asyncio.Event().wait()
        return info

    LocalProvisioner.launch_kernel = launch_kernel


async def paused(root: str, when: str, step: str, kernel_id: str) -> None:
    pause_in_launch(1 if when == "start" else 2, step)
    km = KernelMap(Settings(root_dir=root), restart_poll=0.2)
    await km.start_kernel(path="k0", kernel_id=kernel_id)  # "start" pauses in here
    if when == "restart":
        await km.restart_kernel(kernel_id)
    else:  # auto-restart: jupyter_client's restarter brings a killed kernel back
        os.kill(km.kernel_model(kernel_id)["pid"], signal.SIGKILL)
    await asyncio.Event().wait()


async def main(args: argparse.Namespace) -> None:
    if args.pause:
        when, step = args.pause.split(":")
        await paused(args.root, when, step, args.kernel_id)
    km = KernelMap(Settings(root_dir=args.root))
    if args.restore:
        print(json.dumps(await km.restore()), flush=True)
        await asyncio.Event().wait()
    ids = [await km.start_kernel(path=f"k{i}") for i in range(args.n)]
    if args.busy:
        conn = await km.connect(ids[0], "child", lambda channel, msg: None)
        conn.execute(f"import time; time.sleep({args.busy})")
        while km.kernel_model(ids[0])["execution_state"] != "busy":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    pids = {k: km.kernel_model(k)["pid"] for k in ids}
    if args.release:
        await km.close(shutdown_kernels=False)
    print(json.dumps(pids), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("n", type=int, nargs="?", default=0)
    parser.add_argument("busy", type=float, nargs="?", default=0)
    parser.add_argument("--release", action="store_true")
    parser.add_argument("--restore", action="store_true")
    parser.add_argument("--pause")
    parser.add_argument("--kernel-id")
    asyncio.run(main(parser.parse_args()))
