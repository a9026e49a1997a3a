"""A kernel that works on its first launch and misbehaves on every later one.

KM_TEST_MARKER names a file counting the launches; KM_TEST_MODE says what later launches
do: "exit" (exit at once with code 7) or "hang" (never answer).
"""

import os
import sys
import time

marker = os.environ["KM_TEST_MARKER"]
mode = os.environ.get("KM_TEST_MODE", "exit")
try:
    with open(marker) as f:
        launches = int(f.read() or 0)
except FileNotFoundError:
    launches = 0
with open(marker, "w") as f:
    f.write(str(launches + 1))

if launches >= 1:
    if mode == "exit":
        sys.exit(7)
    time.sleep(3600)
    sys.exit(0)

from ipykernel import kernelapp  # noqa: E402

kernelapp.launch_new_instance()
