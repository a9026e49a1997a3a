"""kill -9 kernelmon at each step of a kernel's start, restart and auto-restart: at its next
launch every kernel is either adopted or was never started; nothing is started twice and
nothing runs unreachable.

One kernelmon process per step, all run at once; each stops for good right before or right
after jupyter_client launches the kernel process (the pause is in jupyter_client's launch,
see kernelmon_child.py) and is killed there. One ``restore()`` then sees what they left.
"""

from __future__ import annotations

import uuid

import pytest

from kernelmon.core import KernelMap, Settings
from tests.core.conftest import process_gone
from tests.reliability.children import (
    connection_file,
    first_line,
    kill_kernelmon,
    processes_naming,
    spawn_kernelmon,
)

STEPS = [
    ("start", "before"),
    ("start", "after"),
    ("restart", "before"),
    ("restart", "after"),
    ("auto-restart", "before"),
    ("auto-restart", "after"),
]


@pytest.fixture(scope="module")
def killed_at_each_step(tmp_path_factory):
    """{(when, step): (kernel id, pid of the kernel launched at that step or None)}"""
    root = tmp_path_factory.mktemp("steps")
    (root / "k0").mkdir()
    children = {}
    for when, step in STEPS:
        kid = str(uuid.uuid4())
        child = spawn_kernelmon(root, "--pause", f"{when}:{step}", "--kernel-id", kid)
        children[when, step] = (kid, child)
    paused = {}
    try:
        for key, (kid, child) in children.items():
            paused[key] = (kid, first_line(child)["pid"])
    finally:
        for _kid, child in children.values():
            kill_kernelmon(child)
    return root, paused


@pytest.fixture(scope="module")
def restored(aio, killed_at_each_step):
    root, paused = killed_at_each_step
    km = KernelMap(Settings(root_dir=str(root)), shutdown_wait=2.0)
    adopted = aio.run(km.restore(), timeout=120)
    yield km, paused, adopted
    aio.run(km.close())


@pytest.mark.parametrize(("when", "step"), STEPS, ids=[f"{w}-{s}" for w, s in STEPS])
def test_killed_at_each_step_leaves_the_kernel_adopted_or_never_started(restored, when, step):
    km, paused, adopted = restored
    kid, launched = paused[when, step]
    running = processes_naming(str(connection_file(kid)))
    if step == "before":
        # the process was never started (and a restart's old one was stopped first)
        assert kid not in adopted
        assert launched is None
        assert running == set()
    else:
        # the launched process runs, and is the one adopted: reachable, not started twice
        assert kid in adopted, f"the kernel launched at {when}/{step} was not adopted"
        assert km.kernel_model(kid)["pid"] == launched
        assert km.kernel_model(kid)["execution_state"] in ("idle", "busy", "starting")
        assert running == {launched}


def test_nothing_is_left_running_after_shutdown(aio, restored):
    km, paused, _adopted = restored
    aio.run(km.shutdown_all(), timeout=60)
    for kid, pid in paused.values():
        assert process_gone(pid)
        assert processes_naming(str(connection_file(kid))) == set()
