"""A kernelmon process for crash tests: starts N kernels, prints their ids and pids as one
JSON line, then waits to be killed."""

import asyncio
import json
import sys

from kernelmon.core import KernelMap, Settings


async def main(root: str, n: int) -> None:
    km = KernelMap(Settings(root_dir=root))
    ids = [await km.start_kernel(path=f"k{i}") for i in range(n)]
    print(json.dumps({k: km.kernel_model(k)["pid"] for k in ids}), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
