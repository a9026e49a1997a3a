"""What a backend refuses, in the kernel model (the UI shows these sentences as they are)."""

from __future__ import annotations

from kernelmon.core.backends.base import Action, KernelBackend
from kernelmon.core.backends.factory import BackendFactory
from kernelmon.core.records import ExecutionState, KernelRecord, Origin


def test_a_stale_kernel_can_only_be_cleaned_up():
    record = KernelRecord(id="k1", name="python3", origin=Origin.STALE)
    backend = BackendFactory().stale(record, "/nonexistent/kernel-k1.json")
    refusals = record.to_model()["refusals"]
    assert set(refusals) == {"interrupt", "restart", "connect"}
    assert "clean it up" in refusals["restart"]
    assert backend.refusal(Action.SHUTDOWN) is None


class RecordOnly(KernelBackend):
    """The base's own rules, nothing overridden (no process is touched by these tests)."""

    connection_info = {}  # type: ignore[assignment]

    async def interrupt(self) -> None: ...
    async def restart(self, timeout: float) -> None: ...
    async def shutdown(self, now: bool = False) -> None: ...
    async def is_alive(self) -> bool:
        return True


def test_refusals_follow_the_record_as_it_changes():
    record = KernelRecord(id="k2", name="python3", origin=Origin.EXTERNAL, parent_app="jupyter-lab")
    record.parent_pid = 4242
    RecordOnly(record)
    record.execution_state = ExecutionState.IDLE
    refusals = record.to_model()["refusals"]
    assert set(refusals) == {"restart"}
    assert "jupyter-lab (pid 4242) owns it" in refusals["restart"]
    record.execution_state = ExecutionState.DEAD
    refusals = record.to_model()["refusals"]
    assert "nothing to interrupt" in refusals["interrupt"]
    assert "dead" in refusals["connect"]


def test_a_record_without_a_backend_refuses_nothing():
    assert KernelRecord(id="k3", name="python3").to_model()["refusals"] == {}
