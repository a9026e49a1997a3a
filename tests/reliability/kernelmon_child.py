"""A kernelmon process for crash tests: starts N kernels, prints their ids and pids as one
JSON line, then waits to be killed. With a third argument S, the first kernel is left
running ``time.sleep(S)``."""

import asyncio
import json
import sys

from kernelmon.core import KernelMap, Settings


async def main(root: str, n: int, busy: float) -> None:
    km = KernelMap(Settings(root_dir=root))
    ids = [await km.start_kernel(path=f"k{i}") for i in range(n)]
    if busy:
        conn = await km.connect(ids[0], "child", lambda channel, msg: None)
        conn.execute(f"import time; time.sleep({busy})")
        while km.kernel_model(ids[0])["execution_state"] != "busy":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    print(json.dumps({k: km.kernel_model(k)["pid"] for k in ids}), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if sys.argv[3:] else 0))
