"""Starts kernels the way other tools do, for the discovery tests (run as its own process).

    python launcher.py RUNTIME_DIR [N [KERNEL_NAME]]

Starts N (default 1) kernels of KERNEL_NAME (default ``python3``) with a plain jupyter_client
``KernelManager`` (independent processes, so they survive this script being killed),
connection files in RUNTIME_DIR (with RUNTIME_DIR ``-``, wherever ``KernelManager`` puts them
when not told: a temporary file, as nbclient and papermill do), and prints one JSON line:
``{"pid": ..., "kernels": [{"id", "pid", "connection_file"}, ...]}``. It then waits until
its stdin is closed or it gets SIGTERM, and shuts its kernels down (killed with SIGKILL, it
leaves them running: orphans).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

from jupyter_client import KernelManager


def main() -> None:
    runtime = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    kernel_name = sys.argv[3] if len(sys.argv) > 3 else "python3"
    temp = runtime == "-"
    if temp:
        runtime = os.environ.get("TMPDIR", "/tmp")
    os.makedirs(runtime, exist_ok=True)
    managers: list[KernelManager] = []
    # the kernels' output goes to a log file, never into our stdout (the test reads it)
    log = open(os.path.join(runtime, f"launcher-{os.getpid()}.log"), "ab")  # noqa: SIM115

    def stop(*_args: object) -> None:
        for km in managers:
            try:
                km.shutdown_kernel(now=True)
            except Exception as e:
                print(f"shutdown failed: {e}", file=sys.stderr)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)

    def start() -> KernelManager:
        kernel_id = str(uuid.uuid4())
        where = {} if temp else {"connection_file": f"{runtime}/kernel-{kernel_id}.json"}
        km = KernelManager(kernel_name=kernel_name, **where)
        km.start_kernel(independent=True, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        managers.append(km)
        client = km.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=30)
        finally:
            client.stop_channels()
        return km

    try:
        for _ in range(count):
            for attempt in range(3):
                try:
                    start()
                    break
                except RuntimeError:
                    # The kernel died before answering: another process took a TCP port
                    # jupyter_client picked before the kernel bound it ("Address already
                    # in use", a known race of TCP kernels, likelier with tests running in
                    # parallel). Try again with fresh ports.
                    managers.pop().shutdown_kernel(now=True)
                    if attempt == 2:
                        raise
        kernels = [
            {
                "id": os.path.basename(km.connection_file).removeprefix("kernel-")[:-5],
                "pid": km.provisioner.pid,
                "connection_file": km.connection_file,
            }
            for km in managers
        ]
        print(json.dumps({"pid": os.getpid(), "kernels": kernels}), flush=True)
        sys.stdin.read()  # until the test closes our stdin
    finally:
        stop()


if __name__ == "__main__":
    main()
